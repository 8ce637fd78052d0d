import NIOCore
import NIOWebSocket
import Synchronization

/// One upgraded WebSocket connection (RFC 6455, server side, no extensions): whole messages in,
/// bursts of messages out.
///
/// Frames are handled on the connection's event loop (`FrameHandler`), with no task between
/// the socket and the protocol work: control frames are answered there, fragments reassembled,
/// text checked; whole messages wait in a bounded inbound buffer for the connection's receiver
/// (`startReceiving`), which a task started for the burst gives all that arrived at once (an
/// idle connection has no task). Messages go out through an
/// `OutboundQueue` that wakes the event loop once per burst (`startWriting`), which writes
/// everything queued with one flush.
///
/// Protocol violations close the connection with the RFC's code: 1002 for an unmasked client
/// frame, reserved bits or opcodes, or a broken fragment sequence; 1007 for text that is not
/// UTF-8; 1009 for a message over `messageBytesMax` (frames over it are refused by NIO's
/// decoder, also with 1009).
///
/// Memory is bounded: reading from the socket pauses while more than `inboundBytesMax` bytes
/// of messages wait for the receiver, so a connection holds at most that, plus one message and
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
        /// A text message of the byte `prefix` (ASCII) then `text`, written straight into the
        /// connection's batch of frames: an Engine.IO packet (its type digit, then its text)
        /// with no string joined for it.
        case prefixedText(prefix: UInt8, text: String)
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
        let handler = FrameHandler(inbound: inbound, configuration: configuration, eventLoop: channel.eventLoop)
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

    /// Hands the client's messages, in order, to `receiver` (call once): those that arrived
    /// at once in one `receive`, then `ended`. No task runs for an idle connection: a task is
    /// started when messages arrive and no earlier one is still at work, and it ends when none
    /// is left, so a connection costs no task's memory between bursts. The calls never overlap,
    /// and the next waits for the one before it to return (a receiver that awaits holds back its
    /// connection's later messages, and past `inboundBytesMax` the socket's reading). After
    /// `ended` returns, the connection closes (a close frame, normal closure, unless one was
    /// sent; the handshake then gets at most `closeTimeout`).
    public func startReceiving(_ receiver: any WebSocketReceiver) {
        if let start = inbound.receive(with: receiver) { Self.consume(inbound, handler, receiver: start) }
    }

    /// The consumer: takes until nothing is left, or the end.
    static func consume(_ inbound: Inbound, _ handler: NIOLoopBound<FrameHandler>, receiver: any WebSocketReceiver) {
        Task {
            while let taken = inbound.take() {
                switch taken {
                case .messages(let messages, let resumeReading):
                    if resumeReading { handler.eventLoop.execute { handler.value.resumeReading() } }
                    await receiver.receive(messages)
                case .end(let failure):
                    await receiver.ended(failure)
                    handler.eventLoop.execute { handler.value.sendClose(.normalClosure) }
                    return
                }
            }
        }
    }

    public struct ProtocolViolation: Error, CustomStringConvertible {
        public let code: WebSocketErrorCode
        public let reason: String
        public var description: String { "WebSocket protocol violation (\(code)): \(reason)" }
    }
}

/// What serves an upgraded connection (`WebSocketConnection.startReceiving`).
public protocol WebSocketReceiver: Sendable {
    /// The client's messages that arrived together, in order.
    func receive(_ messages: [WebSocketConnection.Message]) async
    /// No more messages, after the last `receive`: the client closed (its close is answered)
    /// or the connection dropped (nil), or `WebSocketConnection.ProtocolViolation` after the
    /// connection was closed with its code, or the channel's error (a reset, a frame NIO's
    /// decoder refused). Called once.
    func ended(_ failure: (any Error)?) async
}
