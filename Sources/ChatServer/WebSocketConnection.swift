import NIOCore
import NIOWebSocket
import Synchronization

/// One upgraded WebSocket connection (RFC 6455, server side, no extensions): whole messages in,
/// batches of messages out.
///
/// Control frames are handled here: pings are answered, a close is answered and ends the
/// messages. Protocol violations close the connection with the RFC's code: 1002 for an
/// unmasked client frame, reserved bits or opcodes, or a broken fragment sequence; 1007 for
/// text that is not UTF-8; 1009 for a message over `messageBytesMax` (frames over it are
/// refused by NIO's decoder, also with 1009).
public struct WebSocketConnection: Sendable {
    public enum Message: Sendable, Equatable {
        case text(String)
        case binary([UInt8])
    }

    let channel: any Channel
    let inbound: NIOAsyncChannelInboundStream<WebSocketFrame>
    let outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
    let configuration: WebSocketHTTPChannel.Configuration
    private let closing = Closing()

    /// Whether the close frame was sent, shared by the copies of a connection.
    private final class Closing: Sendable {
        let sent = Atomic<Bool>(false)
    }

    init(channel: any Channel, inbound: NIOAsyncChannelInboundStream<WebSocketFrame>,
         outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>, configuration: WebSocketHTTPChannel.Configuration) {
        self.channel = channel
        self.inbound = inbound
        self.outbound = outbound
        self.configuration = configuration
    }

    /// Sends the messages with one flush. Nothing is sent after `close`.
    public func send(_ messages: [Message]) async throws {
        guard !messages.isEmpty, !closing.sent.load(ordering: .relaxed) else { return }
        let allocator = channel.allocator
        try await outbound.write(contentsOf: messages.map { message in
            switch message {
            case .text(let text):
                var buffer = allocator.buffer(capacity: text.utf8.count)
                buffer.writeString(text)
                return WebSocketFrame(fin: true, opcode: .text, data: buffer)
            case .binary(let bytes):
                return WebSocketFrame(fin: true, opcode: .binary, data: allocator.buffer(bytes: bytes))
            }
        })
    }

    /// Starts the closing handshake (once): sends a close frame with `code`, and drops the
    /// connection if the client has not answered within `closeTimeout`.
    public func close(_ code: WebSocketErrorCode) async {
        guard !closing.sent.exchange(true, ordering: .relaxed) else { return }
        var data = channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        try? await outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
        let channel = self.channel
        channel.eventLoop.scheduleTask(in: .init(configuration.closeTimeout)) { channel.close(promise: nil) }
    }

    /// The client's messages, in order. Ends when the client closes (its close is answered)
    /// or the connection drops; throws `ProtocolViolation` after closing the connection with
    /// its code.
    public var messages: Messages { Messages(connection: self) }

    public struct ProtocolViolation: Error, CustomStringConvertible {
        public let code: WebSocketErrorCode
        public let reason: String
        public var description: String { "WebSocket protocol violation (\(code)): \(reason)" }
    }

    public struct Messages: AsyncSequence {
        public typealias Element = Message
        let connection: WebSocketConnection

        public func makeAsyncIterator() -> Iterator {
            Iterator(connection: connection, frames: connection.inbound.makeAsyncIterator())
        }

        public struct Iterator: AsyncIteratorProtocol {
            let connection: WebSocketConnection
            var frames: NIOAsyncChannelInboundStream<WebSocketFrame>.AsyncIterator
            var ended = false

            public mutating func next() async throws -> Message? {
                guard !ended else { return nil }
                var fragments: [UInt8] = []
                var fragmentOpcode: WebSocketOpcode?
                while let frame = try await frames.next() {
                    guard frame.maskKey != nil else { return try await fail(.protocolError, "unmasked client frame") }
                    guard !frame.rsv1, !frame.rsv2, !frame.rsv3 else { return try await fail(.protocolError, "reserved bits set") }
                    switch frame.opcode {
                    case .ping:
                        try await connection.outbound.write(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
                    case .pong:
                        continue
                    case .connectionClose:
                        ended = true
                        // Answer with the client's code (RFC 6455 §5.5.1), unless we closed first.
                        var data = frame.unmaskedData
                        await connection.close(data.readWebSocketErrorCode() ?? .normalClosure)
                        return nil
                    case .text, .binary, .continuation:
                        if frame.opcode == .continuation {
                            guard fragmentOpcode != nil else { return try await fail(.protocolError, "continuation without a first fragment") }
                        } else {
                            guard fragmentOpcode == nil else { return try await fail(.protocolError, "new message inside a fragmented one") }
                            fragmentOpcode = frame.opcode
                        }
                        let data = frame.unmaskedData
                        guard fragments.count + data.readableBytes <= connection.configuration.messageBytesMax else {
                            return try await fail(.messageTooLarge, "message over \(connection.configuration.messageBytesMax) bytes")
                        }
                        guard frame.fin else {
                            fragments.append(contentsOf: data.readableBytesView)
                            continue
                        }
                        let whole: ByteBuffer
                        if fragments.isEmpty {
                            whole = data
                        } else {
                            fragments.append(contentsOf: data.readableBytesView)
                            whole = ByteBuffer(bytes: fragments)
                        }
                        if fragmentOpcode == .binary { return .binary(Array(whole.readableBytesView)) }
                        guard let text = whole.readableBytesView.withContiguousStorageIfAvailable({ String(validating: $0, as: UTF8.self) })
                                ?? String(validating: Array(whole.readableBytesView), as: UTF8.self)
                        else { return try await fail(.dataInconsistentWithMessage, "text that is not UTF-8") }
                        return .text(text)
                    default:
                        return try await fail(.protocolError, "reserved opcode \(frame.opcode)")
                    }
                }
                ended = true
                return nil
            }

            /// Closes the connection with `code` and throws.
            private mutating func fail(_ code: WebSocketErrorCode, _ reason: String) async throws -> Message? {
                ended = true
                await connection.close(code)
                connection.channel.close(promise: nil)
                throw ProtocolViolation(code: code, reason: reason)
            }
        }
    }
}
