import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import SocketIO

/// Serves a `SocketIOServer` over HTTP at a path (`/socket.io/` by default): long-polling
/// GET and POST on the router, WebSocket through the HTTP/1 upgrade.
///
/// Error replies follow the Engine.IO reference server: 400 with
/// `{"code":N,"message":"..."}` for an unsupported `EIO` (5), an unknown transport (0), an
/// unknown session id (1), a bad handshake method (2) or a bad request (3).
public struct SocketIOEndpoint: Sendable {
    public let server: SocketIOServer
    public let path: String
    /// Which cross-origin browser pages may call the endpoint.
    public let cors: CORSPolicy
    /// Whether a client's address is the last one in `X-Forwarded-For` (set by a proxy in front
    /// of the server) rather than the connection's peer (`clientAddress`). Only behind a proxy
    /// that sets the header: otherwise any client could claim any address.
    public let trustForwardedFor: Bool

    public init(server: SocketIOServer, path: String = "/socket.io/", cors: CORSPolicy = .none, trustForwardedFor: Bool = false) {
        self.server = server
        self.path = path.hasSuffix("/") ? path : path + "/"
        self.cors = cors
        self.trustForwardedFor = trustForwardedFor
    }

    /// The address a client's sessions count against (`SocketIOServer.Configuration
    /// .anonymousSessionsPerAddressMax`): the connection's peer, or with `trustForwardedFor`,
    /// the last address in `X-Forwarded-For` when there is one.
    func clientAddress(_ client: ClientAddress) -> String {
        if trustForwardedFor, let forwarded = client.forwardedFor?.split(separator: ",").last {
            let address = forwarded.trimmingCharacters(in: .whitespaces)
            if !address.isEmpty { return address }
        }
        return client.peer ?? "unknown"
    }

    enum Failure: Int {
        case unknownTransport = 0
        case unknownSession = 1
        case badHandshakeMethod = 2
        case badRequest = 3
        case unsupportedVersion = 5

        var message: String {
            switch self {
            case .unknownTransport: "Transport unknown"
            case .unknownSession: "Session ID unknown"
            case .badHandshakeMethod: "Bad handshake method"
            case .badRequest: "Bad request"
            case .unsupportedVersion: "Unsupported protocol version"
            }
        }
    }

    /// Adds the polling routes.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        // The router matches the path with or without its trailing slash.
        for route in [String(path.dropLast())] {
            router.on(RouterPath(route), method: .get) { request, _ in await handlePolling(request, body: nil) }
            router.on(RouterPath(route), method: .post) { request, context in
                var request = request
                let body = try await request.collectBody(upTo: server.configuration.engine.maxPayload + 1)
                return await handlePolling(request, body: Array(body.readableBytesView))
            }
            router.on(RouterPath(route), method: .options) { request, _ in
                Response(status: .noContent, headers: cors.headers(origin: request.headers[.origin], preflight: true))
            }
            router.on(RouterPath(route), method: .put) { request, _ in failure(.badHandshakeMethod, origin: request.headers[.origin]) }
        }
    }

    func failure(_ failure: Failure, origin: String?) -> Response {
        var headers = cors.headers(origin: origin)
        headers[.contentType] = "application/json"
        let body = #"{"code":\#(failure.rawValue),"message":"\#(failure.message)"}"#
        return Response(status: .badRequest, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    func text(_ body: String, origin: String?) -> Response {
        var headers = cors.headers(origin: origin)
        headers[.contentType] = "text/plain; charset=UTF-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    struct Query {
        var eio: Substring?
        var transport: Substring?
        var sid: Substring?
    }

    static func parse(_ uri: URI) -> Query {
        let parameters = uri.queryParameters
        return Query(eio: parameters["EIO"], transport: parameters["transport"], sid: parameters["sid"])
    }

    func handlePolling(_ request: Request, body: [UInt8]?) async -> Response {
        let origin = request.headers[.origin]
        func failure(_ failure: Failure) -> Response { self.failure(failure, origin: origin) }
        func text(_ body: String) -> Response { self.text(body, origin: origin) }
        let query = Self.parse(request.uri)
        guard query.eio == "4" else { return failure(.unsupportedVersion) }
        guard query.transport == "polling" else { return failure(.unknownTransport) }
        guard let sid = query.sid.map(String.init) else {
            guard body == nil else { return failure(.badHandshakeMethod) }
            let client = clientAddress(ClientAddress(peer: request.headers[ClientAddress.peerField],
                                                     forwardedFor: request.headers[ClientAddress.forwardedForField]))
            switch server.handshake(transport: .polling, client: client) {
            case .opened(_, let open):
                return text(EnginePacket.encodePayload([open]))
            case .full:
                return Response(status: .serviceUnavailable, headers: cors.headers(origin: origin))
            }
        }
        if let body {
            guard body.count <= server.configuration.engine.maxPayload else {
                _ = server.post(sid: sid, body: body)  // closes the session
                return failure(.badRequest)
            }
            // Answered at once; the session's worker runs the handlers (`enqueuePosted`).
            let (ok, known, calls) = server.post(sid: sid, body: body)
            await server.enqueuePosted(sid: sid, calls)
            guard known else { return failure(.unknownSession) }
            return ok ? text("ok") : failure(.badRequest)
        }
        let token = SocketIOServer.randomID()
        let (result, calls) = await withTaskCancellationHandler {
            await server.poll(sid: sid, token: token)
        } onCancel: {
            // Only resumes the held poll (the token keeps it from ending a newer one).
            server.pollAbandoned(sid: sid, token: token)
        }
        await server.perform(calls)
        switch result {
        case .body(let payload): return text(payload)
        case .unknownSession: return failure(.unknownSession)
        case .rejected: return failure(.badRequest)
        }
    }

    /// The WebSocket handler for an upgrade request's URI (path and query), when it is for
    /// this endpoint: `EIO=4` and `transport=websocket`. For `WebSocketHTTPChannel`'s route.
    public func webSocketHandler(uri: String, client: ClientAddress) -> WebSocketHTTPChannel.Handler? {
        let uri = URI(uri)
        guard uri.path == path || uri.path + "/" == path else { return nil }
        let query = Self.parse(uri)
        guard query.eio == "4", query.transport == "websocket" else { return nil }
        let sid = query.sid.map(String.init)
        let server = self.server
        let address = clientAddress(client)
        return { connection in Self.serveWebSocket(server: server, sid: sid, client: address, connection: connection) }
    }

    static func serveWebSocket(server: SocketIOServer, sid requested: String?, client: String, connection: WebSocketConnection) {
        let queue = OutboundQueue<SocketIOServer.OutboundItem>(
            capacity: server.configuration.outboundQueueFramesMax, bytesCapacity: server.configuration.outboundQueueBytesMax,
            budget: server.outboundBudget, weigh: \.bytes)
        // Whatever is still queued when the connection is gone is never written: give its
        // bytes back to the budget.
        connection.channel.closeFuture.whenComplete { _ in queue.abort() }
        guard let (sid, startsAsProbe) = server.attachWebSocket(sid: requested, client: client, queue: queue) else {
            connection.close(.policyViolation)
            return
        }
        // The event loop writes what the server queues, one flush per burst; the queue's end
        // (the session closed, or the client was too slow) sends the close frame.
        connection.startWriting(queue) { item in
            switch item {
            case .frame(let frame):
                return .encoded(frame)
            case .packet(let packet):
                if let binary = packet.binaryFrame { return .message(.binary(binary)) }
                guard case .text(let text) = packet.data else { return nil }
                return .prefixedText(prefix: packet.type.digit, text: text)
            case .barrier:
                return .written { server.writesFlushed(sid: sid) }
            }
        }
        connection.startReceiving(WebSocketSession(server: server, sid: sid, queue: queue, probe: startsAsProbe))
    }
}

/// Which cross-origin pages a browser lets call the server (CORS). The reference server sends
/// no CORS headers unless configured; a development server allows any origin.
public enum CORSPolicy: Sendable, Equatable {
    /// No CORS headers: only pages of the server's own origin.
    case none
    /// Any origin, with credentials (the request's `Origin` is echoed).
    case any
    /// Only these origins (`https://app.example.com`), with credentials.
    case origins(Set<String>)

    /// The response headers for a request from `origin`.
    public func headers(origin: String?, preflight: Bool = false) -> HTTPFields {
        var headers = HTTPFields()
        let allowed: String
        switch self {
        case .none:
            return headers
        case .any:
            allowed = origin ?? "*"
        case .origins(let origins):
            guard let origin, origins.contains(origin) else { return headers }
            allowed = origin
        }
        headers[.accessControlAllowOrigin] = allowed
        if allowed != "*" {
            headers[.accessControlAllowCredentials] = "true"
            headers[.vary] = "Origin"
        }
        if preflight {
            headers[.accessControlAllowMethods] = "GET, POST, OPTIONS"
            headers[.accessControlAllowHeaders] = "content-type, authorization, x-chatlog-user"
        }
        return headers
    }
}
