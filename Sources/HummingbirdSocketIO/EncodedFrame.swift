import NIOCore
import NIOWebSocket

/// A server-to-client WebSocket frame encoded once (RFC 6455 §5.2: server frames are not
/// masked, so the bytes are the same for every recipient). A value type.
public struct EncodedFrame: Sendable {
    /// The whole frame: header, then payload.
    public let bytes: ByteBuffer
    /// Where the payload starts.
    public let headerBytes: Int

    /// A final text frame carrying `text`.
    public static func text(_ text: String) -> EncodedFrame {
        var bytes = ByteBufferAllocator().buffer(capacity: text.utf8.count + 10)
        let headerBytes = writeText(text, into: &bytes)
        return EncodedFrame(bytes: bytes, headerBytes: headerBytes)
    }

    /// Writes a final text frame carrying `text` into `bytes`; returns its header's length.
    @discardableResult
    static func writeText(_ text: String, into bytes: inout ByteBuffer) -> Int {
        let length = text.utf8.count
        let start = bytes.writerIndex
        bytes.writeInteger(UInt8(0x81))  // FIN, text
        switch length {
        case ..<126:
            bytes.writeInteger(UInt8(length))
        case ..<65_536:
            bytes.writeInteger(UInt8(126))
            bytes.writeInteger(UInt16(length), endianness: .big)
        default:
            bytes.writeInteger(UInt8(127))
            bytes.writeInteger(UInt64(length), endianness: .big)
        }
        let headerBytes = bytes.writerIndex - start
        bytes.writeString(text)
        return headerBytes
    }
}
