import NIOCore

/// Encoded WebSocket frames bound for one connection, gathered into one buffer so that a burst
/// of small frames costs the channel one write rather than one each. A frame written through
/// NIO's pipeline costs a context hop, a pending-write record and an iovec (and a frame
/// encoded by `WebSocketFrameEncoder` two: its header and its payload); copying a chat event's
/// few hundred bytes costs less than any of them.
///
/// Frames over `frameBytesMax` are not copied: the caller writes them as they are, after what
/// the batch holds. A batch holds at most `bytesMax` bytes (past that, it is taken and a new one
/// started). One frame alone is kept as it came, with no copy. A value type, not thread-safe:
/// the connection's event loop owns it for one drain of its queue.
struct FrameBatch {
    /// Frames larger than this are written as they are, not copied into a batch.
    static let frameBytesMax = 4_096
    /// The bytes one batch gathers before it is written.
    static let bytesMax = 64 << 10

    private var bytes: ByteBuffer?
    /// Whether `bytes` is a frame as it came (not yet a buffer of our own to append to).
    private var borrowed = false

    /// Whether `frame` (an encoded frame's bytes) is small enough to be copied into a batch.
    static func gathers(_ frame: ByteBuffer) -> Bool { frame.readableBytes <= frameBytesMax }

    /// Adds a frame (callers write one over `frameBytesMax` as it is instead: `gathers`);
    /// returns a full batch to write first, if adding it would have taken this one past
    /// `bytesMax`. A frame that starts a batch is kept as it came; a later one is copied.
    mutating func add(_ frame: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        let full = (bytes?.readableBytes ?? 0) + frame.readableBytes > Self.bytesMax ? take() : nil
        guard var held = bytes else {
            bytes = frame
            borrowed = true
            return full
        }
        if borrowed {
            var own = allocator.buffer(capacity: max(Self.frameBytesMax * 2, held.readableBytes + frame.readableBytes))
            own.writeBuffer(&held)
            held = own
            borrowed = false
        }
        bytes = nil  // `held` is then the only reference: appending does not copy the storage
        var frame = frame
        held.writeBuffer(&frame)
        bytes = held
        return full
    }

    /// Adds a final text frame carrying `prefix` (an ASCII byte), when given, then `text`,
    /// encoded straight into the batch's own buffer (server frames are not masked); returns a
    /// full batch to write first, as `add` does.
    mutating func addText(_ text: String, prefix: UInt8? = nil, allocator: ByteBufferAllocator) -> ByteBuffer? {
        let frameBytesMax = text.utf8.count + (prefix == nil ? 0 : 1) + EncodedFrame.headerBytesMax
        let full = (bytes?.readableBytes ?? 0) + frameBytesMax > Self.bytesMax ? take() : nil
        var held: ByteBuffer
        if let current = bytes, !borrowed {
            held = current
        } else {
            held = allocator.buffer(capacity: max(Self.frameBytesMax * 2, (bytes?.readableBytes ?? 0) + frameBytesMax))
            if var current = bytes { held.writeBuffer(&current) }
            borrowed = false
        }
        bytes = nil  // `held` is then the only reference: appending does not copy the storage
        EncodedFrame.writeText(text, prefix: prefix, into: &held)
        bytes = held
        return full
    }

    /// What the batch holds, which it then forgets; nil when empty.
    mutating func take() -> ByteBuffer? {
        defer {
            bytes = nil
            borrowed = false
        }
        return bytes
    }
}
