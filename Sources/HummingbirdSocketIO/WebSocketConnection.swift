import NIOCore
import NIOWebSocket
import Synchronization

/// One upgraded WebSocket connection (RFC 6455, server side, no extensions): whole messages in,
/// bursts of messages out.
///
/// Frames are handled on the connection's event loop (`FrameHandler`), with no task between
/// the socket and the protocol work: control frames are answered there, fragments reassembled,
/// text checked; whole messages wait in a bounded inbound buffer for the connection's task
/// (`messages`), which takes all that arrived at once. Messages go out through an
/// `OutboundQueue` that wakes the event loop once per burst (`startWriting`), which writes
/// everything queued with one flush.
///
/// Protocol violations close the connection with the RFC's code: 1002 for an unmasked client
/// frame, reserved bits or opcodes, or a broken fragment sequence; 1007 for text that is not
/// UTF-8; 1009 for a message over `messageBytesMax` (frames over it are refused by NIO's
/// decoder, also with 1009).
///
/// Memory is bounded: reading from the socket pauses while more than `inboundBytesMax` bytes
/// of messages wait for the task, so a connection holds at most that, plus one message and
/// one socket read; it also pauses while the socket is not writable (what a client makes the
/// server write, pongs included, waits for it to read); the outbound queue holds at most its
/// capacity, and the writer takes from it only while the channel is writable.
public final class WebSocketConnection: Sendable {
    // Thread-safe: its methods may be called from any thread; what they change lives on the
    // event loop (`FrameHandler`) or behind a lock (`Inbound`, the writer's `OutboundQueue`).
    public enum Message: Sendable, Equatable {
        case text(String)
        case binary([UInt8])

        var byteCount: Int {
            switch self {
            case .text(let text): text.utf8.count
            case .binary(let bytes): bytes.count
            }
        }
    }

    /// What the writer does with an item of its queue.
    public enum Outgoing: Sendable {
        case message(Message)
        /// A whole text frame already encoded (`EncodedFrame.text`): one buffer goes to many
        /// connections, with no copy and no frame encoding each.
        case encoded(EncodedFrame)
        /// Called (on the event loop) once everything before it has been written and flushed.
        case written(@Sendable () -> Void)
    }

    let channel: any Channel
    let inbound: Inbound
    let handler: NIOLoopBound<FrameHandler>

    /// Called on the channel's event loop, before the upgrade completes.
    init(channel: any Channel, configuration: WebSocketHTTPChannel.Configuration) throws {
        self.channel = channel
        self.inbound = Inbound(pauseAtBytes: configuration.inboundBytesMax)
        let handler = FrameHandler(inbound: inbound, configuration: configuration)
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    /// Makes the event loop the writer of `queue`: whenever it has items, the loop takes them
    /// all and writes them with one flush (`outgoing` says what each item is; nil skips it),
    /// while the channel is writable. When the queue finishes, what is left is written and
    /// then a close frame (normal closure). Call once per connection.
    public func startWriting<Item: Sendable>(_ queue: OutboundQueue<Item>, _ outgoing: @escaping @Sendable (Item) -> Outgoing?) {
        let handler = self.handler
        let eventLoop = channel.eventLoop
        onEventLoop {
            // On a connection already gone, a writer would hold the queue and the handler in a
            // cycle that no close breaks any more.
            guard handler.value.isOpen else { return }
            handler.value.drain = { handler in handler.write(from: queue, outgoing) }
            queue.setWaker { eventLoop.execute { handler.value.drainQueue() } }
        }
    }

    /// Starts the closing handshake (once): sends a close frame with `code`, and drops the
    /// connection if the client has not answered within `closeTimeout`. Messages queued but
    /// not yet taken by the writer are not sent after it.
    public func close(_ code: WebSocketErrorCode) {
        let handler = self.handler
        onEventLoop { handler.value.sendClose(code) }
    }

    private func onEventLoop(_ body: @escaping @Sendable () -> Void) {
        if channel.eventLoop.inEventLoop { body() } else { channel.eventLoop.execute(body) }
    }

    /// The client's messages, in order. Ends when the client closes (its close is answered)
    /// or the connection drops; throws `ProtocolViolation` after closing the connection with
    /// its code, or the channel's error (a reset, a frame NIO's decoder refused). One reader.
    public var messages: Messages { Messages(connection: self) }

    public struct ProtocolViolation: Error, CustomStringConvertible {
        public let code: WebSocketErrorCode
        public let reason: String
        public var description: String { "WebSocket protocol violation (\(code)): \(reason)" }
    }

    public struct Messages: AsyncSequence {
        public typealias Element = Message
        let connection: WebSocketConnection

        public func makeAsyncIterator() -> Iterator { Iterator(connection: connection) }

        public struct Iterator: AsyncIteratorProtocol {
            let connection: WebSocketConnection
            var batch: [Message] = []
            var position = 0
            var ended = false

            public mutating func next() async throws -> Message? {
                if position < batch.count {
                    defer { position += 1 }
                    return batch[position]
                }
                guard !ended else { return nil }
                let inbound = connection.inbound
                let taken = await withTaskCancellationHandler {
                    await inbound.take()
                } onCancel: {
                    inbound.end(nil)
                }
                switch taken {
                case .messages(let messages, let resumeReading):
                    if resumeReading {
                        let handler = connection.handler
                        connection.channel.eventLoop.execute { handler.value.resumeReading() }
                    }
                    batch = messages
                    position = 1
                    return messages[0]
                case .end(let failure):
                    ended = true
                    batch = []
                    if let failure { throw failure }
                    return nil
                }
            }
        }
    }
}
