import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import ServiceLifecycle
import Synchronization

/// HTTP/1 with WebSocket upgrades, as a Hummingbird child channel: requests go to the
/// application's router; an upgrade request for which `route` returns a handler becomes a
/// `WebSocketConnection` served by it.
///
/// chatlog has its own WebSocket layer (on SwiftNIO's frame codec) rather than
/// hummingbird-websocket's so that a connection writes all its queued messages with one
/// flush (the event loop takes every frame queued since its last write at once, where a
/// writer that flushes per frame makes one system call per event), and so that frames are
/// handled on the event loop with no task in between (`WebSocketConnection`).
public struct WebSocketHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    /// Sets up one upgraded connection: starts its writer and its receiver
    /// (`WebSocketConnection.startReceiving`), or closes it. Called once, on no event loop; the
    /// connection's task (Hummingbird's, one per connection) ends when it returns, so that an
    /// idle WebSocket holds no task: its receiver runs in a task started for each burst of
    /// messages.
    public typealias Handler = @Sendable (WebSocketConnection) -> Void
    /// The handler for an upgrade request's URI (path and query) from `client`, or nil to
    /// refuse it.
    public typealias Route = @Sendable (_ uri: String, _ client: ClientAddress) -> Handler?

    public struct Configuration: Sendable {
        /// Largest message accepted from a client, and largest frame; a client sending more
        /// is closed with 1009 (message too big).
        public var messageBytesMax = 1_000_000
        /// How long a closing handshake may take before the connection is dropped.
        public var closeTimeout: Duration = .seconds(1)
        /// Reading from the socket pauses while more than this many bytes of messages wait
        /// for the connection's receiver.
        public var inboundBytesMax = 1 << 20
        /// Where connections wait until their first request is complete, so that shutdown
        /// can close them (`ConnectionsAwaitingFirstRequest`); nil: not tracked.
        public var awaitingFirstRequest: ConnectionsAwaitingFirstRequest?
        /// The cap on connections held at once (`AcceptedConnections`); nil: none.
        public var acceptedConnections: AcceptedConnections?
        /// After its first request, how long an HTTP connection may be idle between requests,
        /// or take to send a request's head, before it is closed (a kept-alive connection that
        /// sends nothing more, a slow loris on a later request). A request being answered (a
        /// long poll held open) is not idle. WebSocket connections have their own heartbeat.
        public var idleTimeout: Duration = .seconds(30)
        /// The first socket read's buffer; later ones adapt to what reads bring (up to 64 KB).
        /// A channel keeps its last read buffer for the next read, so this is about what an
        /// idle connection holds: NIO's default of 2,048 bytes was a tenth of an idle joined
        /// connection's memory, where chat frames and upgrade requests are a few hundred.
        public var readBufferInitialBytes = 512
        public init() {}
    }

    enum UpgradeResult: Sendable {
        case websocket(WebSocketConnection, Handler)
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade request that `route` refused: answered 400.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    public struct Value: ServerChildChannelValue {
        let result: EventLoopFuture<UpgradeResult>
        public let channel: any Channel
    }

    public let responder: HTTPChannelHandler.Responder
    let configuration: Configuration
    let route: Route

    public init(responder: @escaping HTTPChannelHandler.Responder, configuration: Configuration, route: @escaping Route) {
        self.configuration = configuration
        self.route = route
        // NIO's upgrade handler only looks at a connection's first request. An upgrade request
        // that comes later on a kept-alive connection is redirected to the same URI with the
        // connection closed, so that the client retries on a new connection.
        self.responder = { request, writer, channel in
            // CONNECT and TRACE are not served: 405, and the connection closed (a CONNECT's
            // response has no body framing, so a 404 left it open with neither length nor body).
            if request.method == .connect || request.method == .trace {
                try await writer.writeResponse(HTTPResponse(status: .methodNotAllowed, headerFields: [
                    .connection: "close", .contentLength: "0", .allow: "GET, HEAD, POST, DELETE, OPTIONS",
                ]))
                throw ChannelError.outputClosed
            }
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                // The peer's address goes with the request, in a field a client cannot set.
                var head = request.head
                head.headerFields[ClientAddress.peerField] = channel.remoteAddress?.ipAddress
                try await responder(Request(head: head, body: request.body), writer, channel)
                return
            }
            var uri = request.uri.path
            if let query = request.uri.query { uri += "?" + query }
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: uri]))
            throw ChannelError.outputClosed
        }
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        if let accepted = configuration.acceptedConnections, !accepted.admit(channel) {
            return channel.eventLoop.makeSucceededFuture(
                Value(result: channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel), channel: channel))
        }
        return channel.eventLoop.makeCompletedFuture {
            try channel.syncOptions?.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(
                minimum: 64, initial: configuration.readBufferInitialBytes, maximum: 65_536))
            // What `route` said about the connection's upgrade request, if it made one.
            let routed = NIOLoopBoundBox<Handler??>(nil, eventLoop: channel.eventLoop)
            let route = self.route
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: configuration.messageBytesMax,
                enableAutomaticErrorHandling: true,
                shouldUpgrade: { channel, head in
                    let client = ClientAddress(peer: channel.remoteAddress?.ipAddress,
                                               forwardedFor: head.headers.first(name: "X-Forwarded-For"))
                    // An upgrade is a GET (RFC 6455 §4.1); any other method is refused (400).
                    let handler = head.method == .GET ? route(head.uri, client) : nil
                    routed.value = .some(handler)
                    return channel.eventLoop.makeSucceededFuture(handler == nil ? nil : HTTPHeaders())
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        // Called only after `shouldUpgrade` accepted, so a handler is there.
                        guard case .some(.some(let handler)) = routed.value else { throw ChannelError.inappropriateOperationForState }
                        return .websocket(try WebSocketConnection(channel: channel, configuration: configuration), handler)
                    }
                }
            )
            let upgrade = NIOTypedHTTPServerUpgradeConfiguration<UpgradeResult>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout, logger: logger))
                        let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true))
                        // An upgrade request `route` refused gets 400; a plain request, the router.
                        if case .some(.none) = routed.value { return .refused(http) }
                        return .notUpgraded(http)
                    }
                }
            )
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration(upgradeConfiguration: upgrade)
            pipeline.enablePipelining = false  // NIOAsyncChannel reads one request at a time
            // A request NIO cannot parse (an unknown method, a bad Content-Length, HTTP/9.9, a TLS
            // ClientHello) is answered 400 and the connection closed, rather than left waiting.
            pipeline.enableErrorHandling = true
            pipeline.enableResponseHeaderValidation = false  // HTTPTypes validated them
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            try channel.pipeline.syncOperations.addHandler(CloseOnParserError())
            if let awaiting = configuration.awaitingFirstRequest {
                awaiting.insert(channel)
                result.whenComplete { _ in awaiting.remove(channel) }
            }
            return Value(result: result, channel: channel)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.result.get() {
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http):
                try await http.executeThenClose { _, outbound in
                    try await outbound.write(contentsOf: [
                        .head(HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])),
                        .end(nil),
                    ])
                }
            case .websocket(let connection, let handler):
                // The connection lives on in its channel, its receiver and its writer; a task
                // kept waiting here would be most of an idle connection's memory.
                handler(connection)
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with chatlog's WebSocket upgrades (`WebSocketHTTPChannel`).
    public static func webSocketUpgrade(
        configuration: WebSocketHTTPChannel.Configuration = .init(),
        route: @escaping WebSocketHTTPChannel.Route
    ) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            WebSocketHTTPChannel(responder: responder, configuration: configuration, route: route)
        }
    }
}

/// The connections still waiting for their first complete request. NIO's upgrade handler
/// holds such a connection out of reach of graceful shutdown and cancellation (its task waits
/// on the upgrade's future): a client that opens a connection and never finishes a request
/// (browsers keep spare ones; a hostile client can do it on purpose) would hold the HTTP
/// server's shutdown forever. As a `Service` placed after the application in its group, this
/// closes them when the graceful shutdown begins, and any that arrive after. Tracked in a set
/// rather than by a shutdown handler in each connection's task, which would add to every
/// connection's memory (a task keeps its deepest call chain's). Thread-safe (a mutex).
public final class ConnectionsAwaitingFirstRequest: Service, Sendable {
    private struct State {
        var channels: [ObjectIdentifier: (channel: any Channel, since: ContinuousClock.Instant)] = [:]
        var closing = false
    }

    private let state = Mutex(State())
    /// How long a connection may take to send its first complete request before it is closed
    /// (a client that opens connections and sends nothing, or a request head a byte at a time,
    /// holds a socket and a task each until then). Browsers send theirs at once or close the
    /// spare connections they open within a few seconds.
    public let firstRequestTimeout: Duration
    /// How often the timeout is checked.
    let sweepInterval: Duration

    public init(firstRequestTimeout: Duration = .seconds(30), sweepInterval: Duration = .seconds(1)) {
        self.firstRequestTimeout = firstRequestTimeout
        self.sweepInterval = sweepInterval
    }

    /// How many connections wait for their first request now.
    public var count: Int { state.withLock { $0.channels.count } }

    func insert(_ channel: any Channel) {
        let close = state.withLock { state in
            if !state.closing { state.channels[ObjectIdentifier(channel)] = (channel, .now) }
            return state.closing
        }
        if close { channel.close(promise: nil) }
    }

    func remove(_ channel: any Channel) {
        _ = state.withLock { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Closes the connections that have waited longer than `firstRequestTimeout`.
    func closeExpired(now: ContinuousClock.Instant = .now) {
        let expired = state.withLock { state in
            state.channels.values.filter { now - $0.since >= firstRequestTimeout }.map(\.channel)
        }
        for channel in expired { channel.close(promise: nil) }
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.sweepInterval)
                self.closeExpired()
            }
        }
        let channels = state.withLock { state in
            state.closing = true
            return state.channels.values.map(\.channel)
        }
        for channel in channels { channel.close(promise: nil) }
    }
}

/// Where a request came from: the connection's peer address, and the `X-Forwarded-For` a proxy
/// in front may have set (trusted or not by whoever reads it: `SocketIOEndpoint.trustForwardedFor`).
public struct ClientAddress: Sendable {
    public var peer: String?
    public var forwardedFor: String?

    public init(peer: String?, forwardedFor: String?) {
        self.peer = peer
        self.forwardedFor = forwardedFor
    }

    /// The field the HTTP channel sets on every request to the peer's address, replacing
    /// whatever a client sent in it.
    public static let peerField = field("Chatlog-Peer-Address")
    static let forwardedForField = field("X-Forwarded-For")

    private static func field(_ name: String) -> HTTPField.Name {
        guard let field = HTTPField.Name(name) else { preconditionFailure("\(name) is a valid field name") }
        return field
    }
}

/// Closes a connection whose request could not be parsed, once NIO's error handler has
/// answered it 400 (`Connection: close`): without it the connection stayed open.
final class CloseOnParserError: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            context.close(promise: nil)
            return
        }
        context.fireErrorCaught(error)
    }
}
