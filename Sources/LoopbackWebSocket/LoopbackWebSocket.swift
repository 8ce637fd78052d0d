import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// A minimal WebSocket client on SwiftNIO, for the WebSocket benchmark and the live tests:
/// it connects to a server on this machine, upgrades, and exchanges whole text and binary
/// messages. Frames it sends are masked, as RFC 6455 requires of clients; pings are answered.
/// No TLS, no compression, no redirects: not a general-purpose client. Its masking keys come
/// from a fast generator seeded once from the system's (a system call per frame cost the
/// benchmark's client as much as the rest of its sending): unpredictable enough for loopback
/// tests, not for a browser facing hostile scripts.
public enum LoopbackWebSocket {
    public enum Message: Sendable, Equatable {
        case text(String)
        case binary([UInt8])
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// The server answered the upgrade request without upgrading.
        case notUpgraded
        /// A message grew past `messageBytesMax`.
        case messageTooLarge(Int)

        public var description: String {
            switch self {
            case .notUpgraded: "the server did not upgrade to WebSocket"
            case .messageTooLarge(let bytes): "a message of more than \(bytes) bytes"
            }
        }
    }

    /// Messages from the server, in order; nil once the connection closed.
    public struct Inbound: ~Copyable {
        fileprivate var frames: NIOAsyncChannelInboundStream<WebSocketFrame>.AsyncIterator
        fileprivate let outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
        fileprivate let messageBytesMax: Int

        public mutating func next() async throws -> Message? {
            var fragments: [UInt8] = []
            var fragmentedOpcode: WebSocketOpcode?
            while let frame = try await frames.next() {
                var data = frame.unmaskedData
                switch frame.opcode {
                case .ping:
                    try await outbound.write(WebSocketFrame(fin: true, opcode: .pong, maskKey: .fast(), data: data))
                    continue
                case .pong:
                    continue
                case .connectionClose:
                    return nil
                case .text, .binary, .continuation:
                    if frame.opcode != .continuation { fragmentedOpcode = frame.opcode }
                    fragments += data.readBytes(length: data.readableBytes) ?? []
                    guard fragments.count <= messageBytesMax else { throw Failure.messageTooLarge(messageBytesMax) }
                    guard frame.fin else { continue }
                    return fragmentedOpcode == .text
                        ? .text(String(decoding: fragments, as: UTF8.self))
                        : .binary(fragments)
                default:
                    continue
                }
            }
            return nil
        }
    }

    /// Sends messages to the server.
    public struct Outbound: Sendable {
        fileprivate let writer: NIOAsyncChannelOutboundWriter<WebSocketFrame>

        public func send(_ message: Message) async throws {
            try await writer.write(Self.frame(message))
        }

        /// Sends several messages with one flush.
        public func send(contentsOf messages: [Message]) async throws {
            try await writer.write(contentsOf: messages.map(Self.frame))
        }

        /// Starts the closing handshake.
        public func close() async throws {
            var code = ByteBuffer()
            code.write(webSocketErrorCode: .normalClosure)
            try await writer.write(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .fast(), data: code))
        }

        private static func frame(_ message: Message) -> WebSocketFrame {
            switch message {
            case .text(let text):
                WebSocketFrame(fin: true, opcode: .text, maskKey: .fast(), data: ByteBuffer(string: text))
            case .binary(let bytes):
                WebSocketFrame(fin: true, opcode: .binary, maskKey: .fast(), data: ByteBuffer(bytes: bytes))
            }
        }
    }

    /// Connects to `ws://host:port` + `path`, runs `body` with the connection, then closes it.
    /// - Parameter messageBytesMax: largest message accepted from the server.
    /// - Throws: `Failure.notUpgraded` when the server does not upgrade; I/O errors.
    public static func withConnection<Result: Sendable>(
        host: String = "127.0.0.1",
        port: Int,
        path: String,
        messageBytesMax: Int = 1 << 20,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (inout Inbound, Outbound) async throws -> Result
    ) async throws -> Result {
        let channel = try await connect(host: host, port: port, path: path, messageBytesMax: messageBytesMax, group: group) { channel in
            try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(wrappingChannelSynchronously: channel)
        }
        return try await channel.executeThenClose { inboundFrames, outboundFrames in
            var inbound = Inbound(frames: inboundFrames.makeAsyncIterator(), outbound: outboundFrames, messageBytesMax: messageBytesMax)
            return try await body(&inbound, Outbound(writer: outboundFrames))
        }
    }

    /// Connects and upgrades, then lets `configure` set up the upgraded channel (on its event
    /// loop: add handlers for `WebSocketFrame`s; frames this client sends must be masked, e.g.
    /// with `WebSocketMaskingKey.fast()`); returns what `configure` returned.
    /// - Throws: `Failure.notUpgraded` when the server does not upgrade; I/O errors.
    public static func connect<Value: Sendable>(
        host: String = "127.0.0.1",
        port: Int,
        path: String,
        messageBytesMax: Int = 1 << 20,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        configure: @escaping @Sendable (any Channel) throws -> Value
    ) async throws -> Value {
        let upgrade = try await ClientBootstrap(group: group).connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<Value?>(maxFrameSize: messageBytesMax) { channel, _ in
                    channel.eventLoop.makeCompletedFuture { try configure(channel) }
                }
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "\(host):\(port)")
                headers.add(name: "Content-Length", value: "0")
                let configuration = NIOTypedHTTPClientUpgradeConfiguration<Value?>(
                    upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers),
                    upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in channel.eventLoop.makeCompletedFuture { nil } }
                )
                var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
                // Frames the server sends right after its 101 response may arrive in the same
                // read: keep them (NIO's default drops them).
                pipeline.leftOverBytesStrategy = .forwardBytes
                return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
            }
        }
        guard let value = try await upgrade.get() else { throw Failure.notUpgraded }
        return value
    }
}

extension WebSocketMaskingKey {
    private static let seed: UInt64 = {
        var generator = SystemRandomNumberGenerator()
        return generator.next()
    }()
    private static let counter = Atomic<UInt64>(0)

    /// A key from a counter through MurmurHash3's 64-bit finalizer, seeded from the system
    /// generator.
    public static func fast() -> WebSocketMaskingKey {
        var z = seed ^ counter.add(1, ordering: .relaxed).newValue
        z = (z ^ (z >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        z = (z ^ (z >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        z ^= z >> 33
        let bytes = (0..<4).map { UInt8(truncatingIfNeeded: z >> ($0 * 8)) }
        return WebSocketMaskingKey(bytes) ?? .random()  // four bytes: never nil
    }
}
