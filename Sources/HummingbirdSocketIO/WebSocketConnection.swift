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

    /// Whole messages from the event loop to the connection's task. Thread-safe (one lock);
    /// one producer (the event loop) and one consumer (the task).
    final class Inbound: Sendable {
        enum Taken: Sendable {
            /// At least one message; `resumeReading` when reading had paused and may go on.
            case messages([Message], resumeReading: Bool)
            /// The end: normal (nil), a protocol violation, or the channel's error.
            case end((any Error)?)
        }

        private struct State {
            var messages: [Message] = []
            var bytes = 0
            var paused = false
            var ended = false
            var failure: (any Error)?
            var waiter: CheckedContinuation<Taken, Never>?
        }

        let pauseAtBytes: Int
        private let state = Mutex(State())

        init(pauseAtBytes: Int) {
            self.pauseAtBytes = pauseAtBytes
        }

        /// Adds a message; true when reading should pause until the task takes them.
        func append(_ message: Message) -> Bool {
            let (pause, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Taken, Never>?) in
                guard !state.ended else { return (false, nil) }
                if let waiter = state.waiter {
                    state.waiter = nil
                    return (false, waiter)
                }
                state.messages.append(message)
                state.bytes += message.byteCount
                if state.bytes > pauseAtBytes { state.paused = true }
                return (state.paused, nil)
            }
            waiter?.resume(returning: .messages([message], resumeReading: false))
            return pause
        }

        /// No more messages: after those waiting, the task gets the end (with `failure`).
        func end(_ failure: (any Error)?) {
            let waiter = state.withLock { state -> CheckedContinuation<Taken, Never>? in
                guard !state.ended else { return nil }
                state.ended = true
                state.failure = failure
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: .end(failure))
        }

        func take() async -> Taken {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Taken? in
                    if !state.messages.isEmpty {
                        defer {
                            state.messages = []
                            state.bytes = 0
                            state.paused = false
                        }
                        return .messages(state.messages, resumeReading: state.paused)
                    }
                    if state.ended { return .end(state.failure) }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }

    /// The connection's protocol work. Not thread-safe: owned by the channel's event loop and
    /// only touched there (the connection reaches it through a `NIOLoopBound`).
    final class FrameHandler: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        let inbound: Inbound
        let configuration: WebSocketHTTPChannel.Configuration
        private var context: ChannelHandlerContext?
        private var fragments: ByteBuffer?
        private var fragmentOpcode: WebSocketOpcode?
        /// No more messages are read (the client closed, or broke the protocol).
        private var stopped = false
        private var closeSent = false
        private var readPaused = false
        private var readPending = false
        /// Writes the writer's queue (`startWriting`).
        var drain: ((FrameHandler) -> Void)?
        private var waitingForWritability = false
        /// The frame encoder's place in the pipeline: frames encoded beforehand are written
        /// from there, past the encoder, straight to the socket.
        private var encoderContext: ChannelHandlerContext?

        init(inbound: Inbound, configuration: WebSocketHTTPChannel.Configuration) {
            self.inbound = inbound
            self.configuration = configuration
        }

        /// Still in the pipeline of an open channel (where `channelInactive` will come).
        var isOpen: Bool { context?.channel.isActive ?? false }

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
            encoderContext = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            self.context = nil
            drain = nil
        }

        func channelInactive(context: ChannelHandlerContext) {
            stopped = true
            drain = nil
            inbound.end(nil)
            context.fireChannelInactive()
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            // The client shut its side without a close frame (the server channel allows half
            // closure): nothing more will come, so the connection ends here. Left open, it
            // would stay in CLOSE_WAIT and keep its session forever.
            if case .inputClosed? = event as? ChannelEvent {
                stopped = true
                inbound.end(nil)
                context.close(promise: nil)
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // Decoder errors were answered by NIO's protocol error handler; any error ends the
            // connection, and the task's messages end with it (the task logs it).
            stopped = true
            inbound.end(error)
            context.close(promise: nil)
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if context.channel.isWritable {
                if waitingForWritability {
                    waitingForWritability = false
                    drainQueue()
                }
                readIfPending()
            }
            context.fireChannelWritabilityChanged()
        }

        // MARK: Reading

        /// Reads are held while messages wait for the task past the limit, and while the
        /// socket is not writable: a client that does not read what it is sent (pongs, close
        /// frames, the replies to its events) is not read either, so what it makes the server
        /// write stays bounded.
        func read(context: ChannelHandlerContext) {
            if readPaused || !context.channel.isWritable { readPending = true } else { context.read() }
        }

        func resumeReading() {
            readPaused = false
            readIfPending()
        }

        private func readIfPending() {
            guard readPending, !readPaused, let context, context.channel.isWritable else { return }
            readPending = false
            context.read()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !stopped else { return }
            let frame = unwrapInboundIn(data)
            guard frame.maskKey != nil else { return fail(.protocolError, "unmasked client frame") }
            guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else { return fail(.protocolError, "reserved bits set") }
            switch frame.opcode {
            case .ping:
                guard !closeSent else { return }
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            case .pong:
                return
            case .connectionClose:
                // Answer with the client's code (RFC 6455 §5.5.1), unless we closed first; then
                // the handshake is over and the TCP connection ends.
                stopped = true
                inbound.end(nil)
                var data = frame.unmaskedData
                closeNow(Self.answer(toClose: &data))
            case .text, .binary, .continuation:
                if frame.opcode == .continuation {
                    guard fragmentOpcode != nil else { return fail(.protocolError, "continuation without a first fragment") }
                } else {
                    guard fragmentOpcode == nil else { return fail(.protocolError, "new message inside a fragmented one") }
                    fragmentOpcode = frame.opcode
                }
                var data = frame.unmaskedData
                guard (fragments?.readableBytes ?? 0) + data.readableBytes <= configuration.messageBytesMax else {
                    return fail(.messageTooLarge, "message over \(configuration.messageBytesMax) bytes")
                }
                guard frame.fin else {
                    if fragments == nil { fragments = context.channel.allocator.buffer(capacity: data.readableBytes * 2) }
                    fragments?.writeBuffer(&data)
                    return
                }
                let whole: ByteBuffer
                if var buffered = fragments {
                    buffered.writeBuffer(&data)
                    whole = buffered
                    fragments = nil
                } else {
                    whole = data
                }
                let opcode = fragmentOpcode
                fragmentOpcode = nil
                let message: Message
                if opcode == .binary {
                    message = .binary(Array(whole.readableBytesView))
                } else {
                    guard let text = whole.readableBytesView.withContiguousStorageIfAvailable({ String(validating: $0, as: UTF8.self) })
                            ?? String(validating: Array(whole.readableBytesView), as: UTF8.self)
                    else { return fail(.dataInconsistentWithMessage, "text that is not UTF-8") }
                    message = .text(text)
                }
                if inbound.append(message) { readPaused = true }
            default:
                fail(.protocolError, "reserved opcode \(frame.opcode)")
            }
        }

        /// Closes the connection with `code`; the task's messages end with the violation.
        private func fail(_ code: WebSocketErrorCode, _ reason: String) {
            stopped = true
            inbound.end(ProtocolViolation(code: code, reason: reason))
            closeNow(code)
        }

        /// The code that answers a client's close frame: its own when it is one a client may
        /// send (RFC 6455 §7.4), 1002 (protocol error) for a reserved or unassigned code (999,
        /// 1005, 1006, 1015, 2000...), a one-byte body or a reason that is not UTF-8.
        static func answer(toClose data: inout ByteBuffer) -> WebSocketErrorCode {
            guard data.readableBytes > 0 else { return .normalClosure }
            guard let code = data.readInteger(endianness: .big, as: UInt16.self) else { return .protocolError }
            let sendable = (1000...1003).contains(code) || (1007...1011).contains(code) || (3000...4999).contains(code)
            guard sendable, String(validating: data.readableBytesView, as: UTF8.self) != nil else { return .protocolError }
            return WebSocketErrorCode(codeNumber: Int(code))
        }

        /// Sends a close frame with `code` (unless one was sent) and drops the TCP connection
        /// once it is written, without waiting for an answer.
        private func closeNow(_ code: WebSocketErrorCode) {
            let sent = sendClose(code)
            guard let channel = context?.channel else { return }
            (sent ?? channel.eventLoop.makeSucceededVoidFuture()).whenComplete { _ in channel.close(promise: nil) }
        }

        // MARK: Writing

        /// Sends a close frame with `code` unless one was sent; returns its write. The
        /// connection is dropped if still open `closeTimeout` later.
        @discardableResult
        func sendClose(_ code: WebSocketErrorCode) -> EventLoopFuture<Void>? {
            guard !closeSent, let context else { return nil }
            closeSent = true
            var data = context.channel.allocator.buffer(capacity: 2)
            data.write(webSocketErrorCode: code)
            let written = context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            let channel = context.channel
            context.eventLoop.scheduleTask(in: TimeAmount(configuration.closeTimeout)) { channel.close(promise: nil) }
            return written
        }

        func drainQueue() {
            drain?(self)
        }

        /// Takes everything queued and writes it with one flush (a `written` item flushes what
        /// precedes it first); waits for writability rather than buffer without bound. Takes
        /// until the queue is empty, so that an end that came while a wake-up was pending is
        /// seen.
        func write<Item>(from queue: OutboundQueue<Item>, _ outgoing: (Item) -> Outgoing?) {
            guard let context else { return }
            var unflushed = false
            defer { if unflushed { context.flush() } }
            while !closeSent {
                // A client that stopped reading is dropped, not waited for: its socket may
                // never become writable again.
                if queue.isAborted {
                    closeNow(.policyViolation)
                    return
                }
                guard context.channel.isWritable else {
                    waitingForWritability = true
                    return
                }
                switch queue.take() {
                case .items(let items):
                    for item in items {
                        switch outgoing(item) {
                        case .message(let message)?:
                            context.write(wrapOutboundOut(frame(message, allocator: context.channel.allocator)), promise: nil)
                            unflushed = true
                        case .encoded(let frame)?:
                            if let encoderContext {
                                encoderContext.write(NIOAny(frame.bytes), promise: nil)
                            } else {
                                let payload = frame.bytes.getSlice(at: frame.bytes.readerIndex + frame.headerBytes,
                                                                   length: frame.bytes.readableBytes - frame.headerBytes) ?? ByteBuffer()
                                context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: payload)), promise: nil)
                            }
                            unflushed = true
                        case .written(let callback)?:
                            if unflushed { context.flush() }
                            unflushed = false
                            callback()
                        case nil:
                            continue
                        }
                    }
                case .empty:
                    return
                case .finished:
                    if unflushed { context.flush() }
                    unflushed = false
                    sendClose(.normalClosure)
                    return
                }
            }
        }

        private func frame(_ message: Message, allocator: ByteBufferAllocator) -> WebSocketFrame {
            switch message {
            case .text(let text):
                var buffer = allocator.buffer(capacity: text.utf8.count)
                buffer.writeString(text)
                return WebSocketFrame(fin: true, opcode: .text, data: buffer)
            case .binary(let bytes):
                return WebSocketFrame(fin: true, opcode: .binary, data: allocator.buffer(bytes: bytes))
            }
        }
    }
}

/// A server-to-client WebSocket frame encoded once (RFC 6455 §5.2: server frames are not
/// masked, so the bytes are the same for every recipient). A value type.
public struct EncodedFrame: Sendable {
    /// The whole frame: header, then payload.
    public let bytes: ByteBuffer
    /// Where the payload starts.
    public let headerBytes: Int

    /// A final text frame carrying `text`.
    public static func text(_ text: String) -> EncodedFrame {
        let length = text.utf8.count
        var bytes = ByteBufferAllocator().buffer(capacity: length + 10)
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
        let headerBytes = bytes.readableBytes
        bytes.writeString(text)
        return EncodedFrame(bytes: bytes, headerBytes: headerBytes)
    }
}
