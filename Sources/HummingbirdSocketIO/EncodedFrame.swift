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
    /// into `bytes`; returns its header's length. One reservation and plain stores: a frame is
    /// written for every event and ack, and `ByteBuffer.writeInteger` checks capacity and
    /// uniqueness for each of the header's bytes (about 240 instructions apiece).
    @discardableResult
    static func writeText(_ text: String, prefix: UInt8? = nil, into bytes: inout ByteBuffer) -> Int {
        let textBytes = text.utf8.count
        let length = textBytes + (prefix == nil ? 0 : 1)
        let headerBytes = length < 126 ? 2 : length < 65_536 ? 4 : 10
        bytes.writeWithUnsafeMutableBytes(minimumWritableBytes: headerBytes + length) { target in
            target[0] = 0x81  // FIN, text
            switch headerBytes {
            case 2:
                target[1] = UInt8(length)
            case 4:
                target[1] = 126
                target[2] = UInt8(truncatingIfNeeded: length >> 8)
                target[3] = UInt8(truncatingIfNeeded: length)
            default:
                target[1] = 127
                for index in 0..<8 { target[2 + index] = UInt8(truncatingIfNeeded: UInt64(length) >> (56 - 8 * UInt64(index))) }
            }
            var at = headerBytes
            if let prefix {
                target[at] = prefix
                at += 1
            }
            let payload = UnsafeMutableRawBufferPointer(rebasing: target[at..<(at + textBytes)])
            let contiguous: Void? = text.utf8.withContiguousStorageIfAvailable { source in
                payload.copyMemory(from: UnsafeRawBufferPointer(source))
            }
            if contiguous == nil { payload.copyBytes(from: text.utf8) }
            return headerBytes + length
        }
        return headerBytes
    }
}
