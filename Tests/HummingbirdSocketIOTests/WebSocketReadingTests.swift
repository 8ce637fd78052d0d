import NIOCore
import NIOEmbedded
import NIOConcurrencyHelpers
import NIOWebSocket
import Testing
@testable import HummingbirdSocketIO

/// The reading side of `WebSocketConnection` on an embedded channel: backpressure towards the
/// socket.
@Suite struct WebSocketReadingTests {
    /// Counts the `read` requests that get past the connection's handler towards the socket.
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
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

    @Test func readingPausesWhileTooManyBytesWaitAndResumesWhenTheTaskTakesThem() async throws {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        var configuration = WebSocketHTTPChannel.Configuration()
        configuration.inboundBytesMax = 100
        let connection = try WebSocketConnection(channel: channel, configuration: configuration)
        channel.read()
        #expect(counter.reads == 1)  // nothing waits: reads go through
        // 60 bytes each.
        let text = String(repeating: "x", count: 60)
        try channel.writeInbound(Self.textFrame(text))
        channel.read()
        #expect(counter.reads == 2)  // 60 bytes wait: under the limit
        try channel.writeInbound(Self.textFrame(text))
        channel.read()
        #expect(counter.reads == 2)  // 120 bytes wait: the read is held
        var messages = connection.messages.makeAsyncIterator()
        #expect(try await messages.next() == .text(text))
        channel.embeddedEventLoop.run()  // the task's resume request
        #expect(counter.reads == 3)  // the held read went on
        #expect(try await messages.next() == .text(text))
    }
}
