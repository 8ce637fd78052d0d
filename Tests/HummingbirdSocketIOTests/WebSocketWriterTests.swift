import NIOCore
import NIOEmbedded
import NIOConcurrencyHelpers
import NIOWebSocket
import Testing

@testable import HummingbirdSocketIO

/// The event-loop writer of `WebSocketConnection`, driven step by step on an embedded channel.
@Suite struct WebSocketWriterTests {
    /// An open (connected) embedded channel with a connection on it; with NIO's frame encoder
    /// before it in the pipeline, as the server's has, when `frameEncoder`.
    static func connection(frameEncoder: Bool = false) throws -> (EmbeddedChannel, WebSocketConnection) {
        let channel = frameEncoder ? EmbeddedChannel(handler: WebSocketFrameEncoder()) : EmbeddedChannel()
        channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1), promise: nil)
        return (channel, try WebSocketConnection(channel: channel, configuration: .init()))
    }

    func connection() throws -> (EmbeddedChannel, WebSocketConnection) { try Self.connection() }

    func written(_ channel: EmbeddedChannel) throws -> [WebSocketFrame] {
        var frames: [WebSocketFrame] = []
        while let frame = try channel.readOutbound(as: WebSocketFrame.self) { frames.append(frame) }
        return frames
    }

    @Test func aBurstIsWrittenAtOnceAndTheEndSendsTheCloseFrame() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<WebSocketConnection.Message>(capacity: 8)
        connection.startWriting(queue) { .message($0) }
        #expect(queue.yield(.text("a")) == .enqueued)
        #expect(queue.yield(.binary([1, 2])) == .enqueued)
        // The queue ends while the loop's wake-up for the items is still pending: the end must
        // not be lost.
        queue.finish()
        channel.embeddedEventLoop.run()
        let frames = try written(channel)
        #expect(frames.map(\.opcode) == [.text, .binary, .connectionClose])
        #expect(frames.first.map { String(buffer: $0.data) } == "a")
        var code = try #require(frames.last).data
        #expect(code.readWebSocketErrorCode() == .normalClosure)
    }

    @Test func nothingIsTakenWhileTheChannelIsNotWritable() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<WebSocketConnection.Message>(capacity: 2)
        connection.startWriting(queue) { .message($0) }
        channel.isWritable = false
        #expect(queue.yield(.text("1")) == .enqueued)
        #expect(queue.yield(.text("2")) == .enqueued)
        channel.embeddedEventLoop.run()
        #expect(try written(channel).isEmpty)
        // The queue stays full, so a slow client shows up as `.dropped` (and is closed).
        #expect(queue.yield(.text("3")) == .dropped)
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.run()
        #expect(try written(channel).map { String(buffer: $0.data) } == ["1", "2"])
    }

    @Test func writtenCallbacksRunAfterWhatPrecedesThem() throws {
        let (channel, connection) = try connection()
        let queue = OutboundQueue<Int>(capacity: 8)
        let log = NIOLockedValueBox<[String]>([])
        connection.startWriting(queue) { item in
            item < 0 ? .written { log.withLockedValue { $0.append("written after \(-item)") } } : .message(.text("\(item)"))
        }
        for item in [1, 2, -2, 3] { #expect(queue.yield(item) == .enqueued) }
        channel.embeddedEventLoop.run()
        #expect(try written(channel).map { String(buffer: $0.data) } == ["1", "2", "3"])
        #expect(log.withLockedValue { $0 } == ["written after 2"])
    }
}

extension WebSocketReadingTests {
    struct Reset: Error, Equatable {}

    @Test func aChannelErrorEndsTheMessagesWithItAndClosesTheConnection() async throws {
        let channel = NIOAsyncTestingChannel()
        let connection = try await channel.testingEventLoop.executeInContext {
            try WebSocketConnection(channel: channel, configuration: .init())
        }
        try await channel.writeInbound(Self.textFrame("before"))
        channel.pipeline.fireErrorCaught(Reset())
        let receiver = RecordingReceiver()
        connection.startReceiving(receiver)  // after both: the receiver gets them in order
        var events = receiver.events.makeAsyncIterator()
        guard case .message(.text("before"))? = await events.next(), case .ended(let failure?)? = await events.next() else {
            Issue.record("the message and then the error were not received")
            return
        }
        #expect(failure is Reset)
        #expect(await events.next() == nil)  // `ended` once
        #expect(try await channel.testingEventLoop.executeInContext { !channel.isActive })
    }
}

extension WebSocketReadingTests {
    /// A client that does not read (its pongs and replies pile up) is not read either.
    @Test func readsAreHeldWhileTheSocketIsNotWritable() throws {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        _ = try WebSocketConnection(channel: channel, configuration: .init())
        channel.isWritable = false
        channel.read()
        #expect(counter.reads == 0)
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(counter.reads == 1)
        channel.read()
        #expect(counter.reads == 2)
    }
}

extension WebSocketWriterTests {
    /// A writer started after the connection closed must not keep the queue alive through the
    /// handler (a cycle that no later close would break).
    @Test func aWriterStartedOnAClosedConnectionHoldsNothing() throws {
        let (channel, connection) = try connection()
        _ = try? channel.finish()
        weak var released: OutboundQueue<WebSocketConnection.Message>?
        do {
            let queue = OutboundQueue<WebSocketConnection.Message>(capacity: 2)
            released = queue
            connection.startWriting(queue) { .message($0) }
            #expect(queue.yield(.text("late")) == .enqueued)
            channel.embeddedEventLoop.run()
        }
        #expect(released == nil)
        withExtendedLifetime(connection) {}
    }
}
