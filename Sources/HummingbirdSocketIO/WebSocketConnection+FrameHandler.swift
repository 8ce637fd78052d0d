import NIOCore
import NIOWebSocket

extension WebSocketConnection {
    /// The connection's protocol work. Not thread-safe: owned by the channel's event loop and
    /// only touched there (the connection reaches it through a `NIOLoopBound`).
    final class FrameHandler: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        let inbound: Inbound
        let configuration: WebSocketHTTPChannel.Configuration
        let eventLoop: any EventLoop
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

        init(inbound: Inbound, configuration: WebSocketHTTPChannel.Configuration, eventLoop: any EventLoop) {
            self.inbound = inbound
            self.configuration = configuration
            self.eventLoop = eventLoop
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
            end(nil)
            context.fireChannelInactive()
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            // The client shut its side without a close frame (the server channel allows half
            // closure): nothing more will come, so the connection ends here. Left open, it
            // would stay in CLOSE_WAIT and keep its session forever.
            if case .inputClosed? = event as? ChannelEvent {
                stopped = true
                end(nil)
                context.close(promise: nil)
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // Decoder errors were answered by NIO's protocol error handler; any error ends the
            // connection, and the receiver's messages end with it (the receiver logs it).
            stopped = true
            end(error)
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

        /// Reads are held while messages wait for the receiver past the limit, and while the
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
                end(nil)
                var data = frame.unmaskedData
                closeNow(Self.answer(toClose: &data))
            case .text, .binary, .continuation:
                if frame.opcode == .continuation {
                    guard fragmentOpcode != nil else { return fail(.protocolError, "continuation without a first fragment") }
                } else {
                    guard fragmentOpcode == nil else { return fail(.protocolError, "new message inside a fragmented one") }
                    fragmentOpcode = frame.opcode
                }
                guard (fragments?.readableBytes ?? 0) + frame.data.readableBytes <= configuration.messageBytesMax else {
                    return fail(.messageTooLarge, "message over \(configuration.messageBytesMax) bytes")
                }
                if frame.fin, frame.opcode == .text, let key = frame.maskKey {
                    // A whole text message in one frame (nearly every one): unmasked straight
                    // into its string.
                    fragmentOpcode = nil
                    guard let text = Self.unmaskedText(frame.data, key: key) else {
                        return fail(.dataInconsistentWithMessage, "text that is not UTF-8")
                    }
                    return deliver(.text(text))
                }
                var data = frame.unmaskedData
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
                deliver(message)
            default:
                fail(.protocolError, "reserved opcode \(frame.opcode)")
            }
        }

        /// Hands a whole message to the receiver (pausing reads past the inbound limit).
        private func deliver(_ message: Message) {
            let (pause, start) = inbound.append(message)
            if pause { readPaused = true }
            if let start { consume(start) }
        }

        /// The text a masked frame's payload carries, or nil when it is not UTF-8. Unmasked
        /// eight bytes at a time into a scratch buffer, then validated into the string: NIO's
        /// `unmaskedData` copies the payload and unmasks it a byte at a time (about 3,000
        /// instructions for a chat message), and the string was then made from that copy.
        static func unmaskedText(_ masked: ByteBuffer, key: WebSocketMaskingKey) -> String? {
            masked.withUnsafeReadableBytes { masked in
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: masked.count) { plain in
                    guard let source = masked.baseAddress, let target = plain.baseAddress else {
                        return String(validating: UnsafeBufferPointer(plain), as: UTF8.self)
                    }
                    let key32 = UInt32(key[0]) | UInt32(key[1]) << 8 | UInt32(key[2]) << 16 | UInt32(key[3]) << 24
                    let key64 = UInt64(key32) | UInt64(key32) << 32  // byte i of the word is key[i % 4]
                    var index = 0
                    while index + 8 <= masked.count {
                        let word = source.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                        UnsafeMutableRawPointer(target + index).storeBytes(of: word ^ key64.littleEndian, as: UInt64.self)
                        index += 8
                    }
                    while index < masked.count {
                        target[index] = source.load(fromByteOffset: index, as: UInt8.self) ^ key[index % 4]
                        index += 1
                    }
                    return String(validating: UnsafeBufferPointer(plain), as: UTF8.self)
                }
            }
        }

        /// Closes the connection with `code`; the receiver's messages end with the violation.
        private func fail(_ code: WebSocketErrorCode, _ reason: String) {
            stopped = true
            end(ProtocolViolation(code: code, reason: reason))
            closeNow(code)
        }

        /// No more messages; the receiver is told after those waiting.
        private func end(_ failure: (any Error)?) {
            if let start = inbound.end(failure) { consume(start) }
        }

        private func consume(_ receiver: any WebSocketReceiver) {
            WebSocketConnection.consume(inbound, NIOLoopBound(self, eventLoop: eventLoop), receiver: receiver)
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
        /// seen. Text frames go to the channel gathered (`FrameBatch`): one write per take
        /// rather than one per frame.
        func write<Item>(from queue: OutboundQueue<Item>, _ outgoing: (Item) -> Outgoing?) {
            guard let context else { return }
            let allocator = context.channel.allocator
            var unflushed = false
            var batch = FrameBatch()
            // Frames are written past the encoder, already encoded; without it (never, in a
            // pipeline of ours) each goes through the pipeline as a `WebSocketFrame`.
            let encoderContext = self.encoderContext
            func writeBatch() {
                if let encoderContext, let bytes = batch.take() { encoderContext.write(NIOAny(bytes), promise: nil) }
            }
            func gather(_ full: ByteBuffer?) {
                if let encoderContext, let full { encoderContext.write(NIOAny(full), promise: nil) }
                unflushed = true
            }
            func flush() {
                writeBatch()
                if unflushed { context.flush() }
                unflushed = false
            }
            defer { flush() }
            while !closeSent {
                // A client that stopped reading is dropped, not waited for: its socket may
                // never become writable again.
                if queue.isAborted {
                    flush()  // what was taken before goes ahead of the close frame, as it would unbatched
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
                        case .message(.text(let text))? where encoderContext != nil:
                            gather(batch.addText(text, allocator: allocator))
                        case .prefixedText(let prefix, let text)? where encoderContext != nil:
                            gather(batch.addText(text, prefix: prefix, allocator: allocator))
                        case .prefixedText(let prefix, let text)?:
                            writeBatch()
                            var buffer = allocator.buffer(capacity: text.utf8.count + 1)
                            buffer.writeInteger(prefix)
                            buffer.writeString(text)
                            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
                            unflushed = true
                        case .message(let message)?:
                            writeBatch()
                            context.write(wrapOutboundOut(frame(message, allocator: allocator)), promise: nil)
                            unflushed = true
                        case .encoded(let frame)?:
                            if let encoderContext {
                                if FrameBatch.gathers(frame.bytes) {
                                    gather(batch.add(frame.bytes, allocator: allocator))
                                } else {
                                    writeBatch()
                                    encoderContext.write(NIOAny(frame.bytes), promise: nil)
                                    unflushed = true
                                }
                            } else {
                                let payload = frame.bytes.getSlice(at: frame.bytes.readerIndex + frame.headerBytes,
                                                                   length: frame.bytes.readableBytes - frame.headerBytes) ?? ByteBuffer()
                                context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: payload)), promise: nil)
                                unflushed = true
                            }
                        case .written(let callback)?:
                            flush()
                            callback()
                        case nil:
                            continue
                        }
                    }
                    // In the channel before the next writability check, which counts its bytes.
                    writeBatch()
                case .empty:
                    return
                case .finished:
                    flush()
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
