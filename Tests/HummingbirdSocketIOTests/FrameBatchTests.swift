import NIOCore
import NIOConcurrencyHelpers
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import HummingbirdSocketIO

/// The writer gathers a burst's text frames into one channel write (`FrameBatch`), on a
/// pipeline with NIO's frame encoder as the server's has.
@Suite struct FrameBatchTests {
    /// An open channel with the frame encoder in its pipeline, and a connection on it.
    func connection() throws -> (EmbeddedChannel, WebSocketConnection) {
        try WebSocketWriterTests.connection(frameEncoder: true)
    }

    /// The channel writes made so far, each as the bytes it carried.
    func writes(_ channel: EmbeddedChannel) throws -> [ByteBuffer] {
        var writes: [ByteBuffer] = []
        while let write = try channel.readOutbound(as: ByteBuffer.self) { writes.append(write) }
        return writes
    }

    struct Malformed: Error {}

    /// The frames in `bytes` (server frames: unmasked), as opcode and payload.
    func frames(_ bytes: ByteBuffer) throws -> [(WebSocketOpcode, [UInt8])] {
        var bytes = bytes
        var frames: [(WebSocketOpcode, [UInt8])] = []
        while bytes.readableBytes > 0 {
            guard let first = bytes.readInteger(as: UInt8.self), let second = bytes.readInteger(as: UInt8.self) else { throw Malformed() }
            #expect(first & 0x80 != 0 && second & 0x80 == 0, "a final, unmasked frame")
            var length = Int(second & 0x7F)
            if length == 126 {
                guard let long = bytes.readInteger(as: UInt16.self) else { throw Malformed() }
                length = Int(long)
            } else if length == 127 {
                guard let long = bytes.readInteger(as: UInt64.self) else { throw Malformed() }
                length = Int(long)
            }
            guard let opcode = WebSocketOpcode(encodedWebSocketOpcode: first & 0x0F),
                  let payload = bytes.readBytes(length: length) else { throw Malformed() }
            frames.append((opcode, payload))
        }
        return frames
    }

    /// The frames of consecutive writes (NIO's encoder writes a header and a payload apart).
    func frames(_ writes: [ByteBuffer]) throws -> [(WebSocketOpcode, [UInt8])] {
        var all = ByteBufferAllocator().buffer(capacity: writes.reduce(0) { $0 + $1.readableBytes })
        for var write in writes { all.writeBuffer(&write) }
        return try frames(all)
    }

    func texts(_ writes: [ByteBuffer]) throws -> [String] {
        try frames(writes).map { String(decoding: $0.1, as: UTF8.self) }
    }

    /// What NIO's encoder makes of a text frame, byte for byte.
    func encodedByNIO(_ text: String) throws -> ByteBuffer {
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        var payload = ByteBufferAllocator().buffer(capacity: text.utf8.count)
        payload.writeString(text)
        try channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: payload)).wait()
        var bytes = ByteBufferAllocator().buffer(capacity: text.utf8.count + 10)
        while var part = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        _ = try channel.finish()
        return bytes
    }

    @Test func aBurstOfTextFramesIsOneWriteOfTheFramesInOrderAsNIOEncodesThem() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<WebSocketConnection.Outgoing>(capacity: 16)
        connection.startWriting(queue) { $0 }
        let texts = ["shared 1", String(repeating: "é", count: 200), "", "shared 2"]
        #expect(queue.yield(.encoded(.text(texts[0]))) == .enqueued)
        #expect(queue.yield(.message(.text(texts[1]))) == .enqueued)
        #expect(queue.yield(.message(.text(texts[2]))) == .enqueued)
        #expect(queue.yield(.encoded(.text(texts[3]))) == .enqueued)
        channel.embeddedEventLoop.run()
        let written = try writes(channel)
        #expect(written.count == 1)
        var expected = ByteBufferAllocator().buffer(capacity: 1_024)
        for text in texts {
            var frame = try encodedByNIO(text)
            expected.writeBuffer(&frame)
        }
        #expect(written.first == expected)
    }

    /// An Engine.IO packet goes as its type digit then its text, written into the batch: byte
    /// for byte what NIO's encoder makes of the joined text, at the lengths where the frame's
    /// header grows (the prefix counts), in order with other frames.
    @Test func prefixedTextIsTheFrameOfThePrefixThenItsText() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<WebSocketConnection.Outgoing>(capacity: 16)
        connection.startWriting(queue) { $0 }
        let texts = [124, 125, 126, 65_534, 65_535, 70_000].map { String(repeating: "é", count: $0 / 2) + String(repeating: "x", count: $0 % 2) }
        var expected = ByteBufferAllocator().buffer(capacity: 300_000)
        for text in texts {
            #expect(queue.yield(.prefixedText(prefix: UInt8(ascii: "4"), text: text)) == .enqueued)
            #expect(queue.yield(.message(.text("after"))) == .enqueued)
            var frame = try encodedByNIO("4" + text)
            expected.writeBuffer(&frame)
            frame = try encodedByNIO("after")
            expected.writeBuffer(&frame)
        }
        channel.embeddedEventLoop.run()
        let written = try writes(channel)
        var all = ByteBufferAllocator().buffer(capacity: expected.readableBytes)
        for var write in written { all.writeBuffer(&write) }
        #expect(all == expected)
        #expect(written.count < texts.count * 2, "gathered")
    }

    @Test func aFrameAloneIsWrittenAsItCameWithoutACopy() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<WebSocketConnection.Outgoing>(capacity: 4)
        connection.startWriting(queue) { $0 }
        let frame = EncodedFrame.text("to many")
        #expect(queue.yield(.encoded(frame)) == .enqueued)
        channel.embeddedEventLoop.run()
        let written = try writes(channel)
        #expect(written.count == 1)
        let sameStorage = try #require(written.first).withUnsafeReadableBytes { one in
            frame.bytes.withUnsafeReadableBytes { other in one.baseAddress == other.baseAddress }
        }
        #expect(sameStorage)
    }

    @Test func largeFramesAndBinaryMessagesAreWrittenAsTheyAreInTheirPlace() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<WebSocketConnection.Outgoing>(capacity: 16)
        connection.startWriting(queue) { $0 }
        let large = String(repeating: "x", count: FrameBatch.frameBytesMax + 1)
        #expect(queue.yield(.message(.text("a"))) == .enqueued)
        #expect(queue.yield(.encoded(.text("b"))) == .enqueued)
        #expect(queue.yield(.encoded(.text(large))) == .enqueued)
        #expect(queue.yield(.message(.text("c"))) == .enqueued)
        #expect(queue.yield(.message(.binary([1, 2, 3]))) == .enqueued)
        #expect(queue.yield(.encoded(.text("d"))) == .enqueued)
        channel.embeddedEventLoop.run()
        let written = try writes(channel)
        let all = try frames(written)
        #expect(all.map(\.0) == [.text, .text, .text, .text, .binary, .text])
        #expect(all.map(\.1) == [Array("a".utf8), Array("b".utf8), Array(large.utf8), Array("c".utf8), [1, 2, 3], Array("d".utf8)])
        // "a" and "b" together, then the large one alone, as it came.
        #expect(try written.count >= 4 && frames(written[0]).map(\.1) == [Array("a".utf8), Array("b".utf8)])
        #expect(written[1].readableBytes == EncodedFrame.text(large).bytes.readableBytes)
    }

    @Test func aBatchOverItsBytesIsSplitInOrder() throws {
        let (channel, connection) = try connection()
        let count = 40
        let queue = OutboundQueue<WebSocketConnection.Outgoing>(capacity: count)
        connection.startWriting(queue) { $0 }
        let texts = (0..<count).map { "\($0):" + String(repeating: "y", count: FrameBatch.frameBytesMax - 20) }
        for text in texts { #expect(queue.yield(.encoded(.text(text))) == .enqueued) }
        channel.embeddedEventLoop.run()
        let written = try writes(channel)
        #expect(try self.texts(written) == texts)
        #expect(written.count > 1)
        #expect(written.allSatisfy { $0.readableBytes <= FrameBatch.bytesMax })
    }

    @Test func aWrittenCallbackRunsOnceTheGatheredFramesBeforeItAreWritten() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<Int>(capacity: 8)
        // The callback takes what the channel was sent when it ran (on the loop's thread).
        nonisolated(unsafe) let loopChannel = channel
        let beforeCallback = NIOLockedValueBox<[ByteBuffer]>([])
        connection.startWriting(queue) { item in
            guard item >= 0 else {
                return .written {
                    while let write = try? loopChannel.readOutbound(as: ByteBuffer.self) {
                        beforeCallback.withLockedValue { $0.append(write) }
                    }
                }
            }
            return .encoded(.text("\(item)"))
        }
        for item in [1, 2, -2, 3, 4] { #expect(queue.yield(item) == .enqueued) }
        channel.embeddedEventLoop.run()
        let before = beforeCallback.withLockedValue { $0 }
        #expect(try texts(before) == ["1", "2"])
        #expect(before.count == 1)
        let after = try writes(channel)
        #expect(try texts(after) == ["3", "4"])
        #expect(after.count == 1)
    }

    @Test func anAbortedQueueIsClosedAfterWhatWasWrittenWithNoFrameAfterTheClose() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<WebSocketConnection.Outgoing>(capacity: 8)
        connection.startWriting(queue) { $0 }
        #expect(queue.yield(.encoded(.text("1"))) == .enqueued)
        #expect(queue.yield(.encoded(.text("2"))) == .enqueued)
        channel.embeddedEventLoop.run()
        queue.abort()
        channel.embeddedEventLoop.run()
        let all = try frames(writes(channel))
        #expect(all.map(\.0) == [.text, .text, .connectionClose])
    }
}
