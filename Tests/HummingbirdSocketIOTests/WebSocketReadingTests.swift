import NIOCore
import NIOEmbedded
import NIOConcurrencyHelpers
import NIOWebSocket
import Synchronization
import Testing
@testable import HummingbirdSocketIO

/// The reading side of `WebSocketConnection` on an embedded channel: backpressure towards the
/// socket.
@Suite struct WebSocketReadingTests {
    /// Counts the `read` requests that get past the connection's handler towards the socket.
    final class ReadCounter: ChannelOutboundHandler, Sendable {
        typealias OutboundIn = Any
        private let count = Atomic(0)
        var reads: Int { count.load(ordering: .relaxed) }
        func read(context: ChannelHandlerContext) {
            count.add(1, ordering: .relaxed)
            context.read()
        }
    }

    /// A text frame as a client sends it: its payload masked.
    static func textFrame(_ text: String) -> WebSocketFrame {
        let key: WebSocketMaskingKey = [1, 2, 3, 4]
        var data = ByteBuffer(string: text)
        data.webSocketMask(key)
        return WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: data)
    }

    @Test func readingPausesWhileTooManyBytesWaitAndResumesWhenTheReceiverTakesThem() async throws {
        // A thread-safe test channel: the receiver's task asks the event loop to read again.
        let channel = NIOAsyncTestingChannel()
        let counter = ReadCounter()
        let configuration = {
            var configuration = WebSocketHTTPChannel.Configuration()
            configuration.inboundBytesMax = 100
            return configuration
        }()
        let connection = try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(counter)
            return try WebSocketConnection(channel: channel, configuration: configuration)
        }
        // A read request on the event loop, and how many got past the connection's handler.
        let read = { try await channel.testingEventLoop.executeInContext { channel.read(); return counter.reads } }
        let receiver = RecordingReceiver(holding: true)
        connection.startReceiving(receiver)
        var events = receiver.events.makeAsyncIterator()
        #expect(try await read() == 1)  // nothing waits: reads go through
        // 60 bytes each. The first is taken at once, and held by the receiver.
        let text = String(repeating: "x", count: 60)
        try await channel.writeInbound(Self.textFrame(text))
        guard case .message(.text(text))? = await events.next() else {
            Issue.record("the receiver did not get the first message")
            return
        }
        try await channel.writeInbound(Self.textFrame(text))
        #expect(try await read() == 2)  // 60 bytes wait: under the limit
        try await channel.writeInbound(Self.textFrame(text))
        #expect(try await read() == 2)  // 120 bytes wait: the read is held
        receiver.release()  // the first batch is done: the receiver takes the next two
        for _ in 0..<2 {
            guard case .message(.text(text))? = await events.next() else {
                Issue.record("the receiver did not get the waiting messages")
                return
            }
        }
        // The consumer asked the event loop to read again before handing on the messages.
        await channel.testingEventLoop.run()
        #expect(counter.reads == 3)  // the held read went on
        #expect(receiver.batches == 2)
        receiver.release()
        _ = try await channel.finish(acceptAlreadyClosed: true)
    }
}
