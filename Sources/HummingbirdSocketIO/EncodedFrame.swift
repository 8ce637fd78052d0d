import NIOCore
import NIOWebSocket
import SocketIO

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

    /// The longest header of a server frame: 2 bytes and a 64-bit length.
    static let headerBytesMax = 10

    /// A final text frame carrying an Engine.IO packet's type digit then its text (a text
    /// packet's WebSocket frame, with no string joined for it); nil for a binary packet.
    static func packet(_ packet: EnginePacket) -> EncodedFrame? {
        guard case .text(let text) = packet.data else { return nil }
        var bytes = ByteBufferAllocator().buffer(capacity: text.utf8.count + 1 + headerBytesMax)
        let headerBytes = writeText(text, prefix: packet.type.digit, into: &bytes)
        return EncodedFrame(bytes: bytes, headerBytes: headerBytes)
    }

    /// Writes a final text frame carrying `prefix` (an ASCII byte), when given, then `text`
    /// into `bytes`; returns its header's length.
    @discardableResult
    static func writeText(_ text: String, prefix: UInt8? = nil, into bytes: inout ByteBuffer) -> Int {
        let length = text.utf8.count + (prefix == nil ? 0 : 1)
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
        if let prefix { bytes.writeInteger(prefix) }
        bytes.writeString(text)
        return headerBytes
    }
}
