import Hummingbird
import Logging
import SocketIO
import Synchronization

/// The server the official Socket.IO and Engine.IO test suites expect: Socket.IO at
/// `/socket.io/` (pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1,000,000,
/// connectTimeout 1 s, namespaces `/` and `/custom`) that emits `auth` with the CONNECT
/// payload, answers `message` with `message-back` and acknowledges `message-with-ack`; and a
/// bare Engine.IO echo server at `/engine.io/`. Two more events serve the interop tests:
/// `join` (a room) and `to-room` (a room, then arguments broadcast to its other members as
/// `room-message`). And a plain WebSocket echo at `/websocket-echo` (no Engine.IO): the
/// WebSocket benchmark's transport baseline.
public enum ConformanceServer {
    /// The Socket.IO suite's handlers.
    final class Handler: SocketIOHandler {
        private let auth = Mutex<[String: JSONValue]>([:])
        /// The interop tests' rooms: the sockets in each. The binding keeps no rooms (an
        /// application that has them, like the chat server, keeps its own).
        private let rooms = Mutex<[String: Set<SocketRef>]>([:])
        static let authDelay: Duration = .milliseconds(2)

        func authorize(_ request: ConnectRequest) async -> ConnectDecision {
            auth.withLock { $0[request.engineID + request.namespace] = request.auth ?? .object([]) }
            return .accept(pid: nil)
        }

        func connected(_ socket: SocketRef, server: SocketIOServer) async {
            let handshakeAuth = auth.withLock { $0.removeValue(forKey: socket.engineID + socket.namespace) } ?? .object([])
            // The suite reads the CONNECT reply and this event with one-shot listeners: two
            // frames that reach its client in one read lose the second. The reference server
            // never writes them together (its transport takes no packet while a write is in
            // flight), and they reach the client apart; here the event waits until the reply
            // is written, and a moment more.
            await server.websocketFlushed(sid: socket.engineID)
            try? await Task.sleep(for: Self.authDelay)
            server.emit(socket, event: "auth", [handshakeAuth])
        }

        func disconnected(_ socket: SocketRef, reason: SocketSession.DisconnectReason, server: SocketIOServer) async {
            rooms.withLock { rooms in
                for room in Array(rooms.keys) {
                    rooms[room]?.remove(socket)
                    if rooms[room]?.isEmpty == true { rooms[room] = nil }
                }
            }
        }

        func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async {
            switch name {
            case "message":
                // Sent back as it came: the arguments' text is copied, not parsed.
                server.emit(socket, event: "message-back", relaying: arguments)
            case "message-with-ack":
                if let ackID { server.ack(socket, id: ackID, arguments.values) }
            // Beyond the official suites, for the interop tests: rooms and broadcast.
            case "join":
                if let room = arguments.values.first?.stringValue { rooms.withLock { _ = $0[room, default: []].insert(socket) } }
                if let ackID { server.ack(socket, id: ackID, []) }
            case "to-room":
                let values = arguments.values
                if let room = values.first?.stringValue {
                    let members = rooms.withLock { $0[room] ?? [] }
                    for member in members where member.namespace == socket.namespace && member != socket {
                        server.emit(member, event: "room-message", Array(values.dropFirst()))
                    }
                }
                if let ackID { server.ack(socket, id: ackID, []) }
            default:
                break
            }
        }
    }

    final class Echo: SocketIOHandler {
        func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async {}
    }

    /// The benchmark's transport baseline: every message sent back, through the same queue
    /// and batched writer as Socket.IO's, with no Engine.IO.
    static func echo(_ connection: WebSocketConnection) {
        let queue = OutboundQueue<WebSocketConnection.Message>(capacity: 1_024)
        connection.startWriting(queue) { .message($0) }
        connection.startReceiving(EchoReceiver(queue: queue))
    }

    struct EchoReceiver: WebSocketReceiver {
        let queue: OutboundQueue<WebSocketConnection.Message>

        func receive(_ messages: [WebSocketConnection.Message]) async {
            // A client that does not read its echoes is closed once the queue is full.
            for message in messages where queue.yield(message) != .enqueued {
                queue.finish()
                return
            }
        }

        func ended(_ failure: (any Error)?) async {
            queue.finish()
        }
    }

    /// Builds the application on `host:port`; `onRunning` gets the bound port. `heartbeat`
    /// and `connectTimeout` replace the suites' 300/200 ms ping interval and timeout and 1 s
    /// connect timeout (the WebSocket benchmark and the Swift live tests use the defaults,
    /// 25/20 s and 45 s, so that a loaded machine does not time their sessions out).
    public static func application(
        host: String = "127.0.0.1",
        port: Int,
        logger: Logger,
        heartbeat: (interval: Duration, timeout: Duration) = (.milliseconds(300), .milliseconds(200)),
        connectTimeout: Duration = .seconds(1),
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        var configuration = SocketIOServer.Configuration()
        configuration.engine.pingInterval = heartbeat.interval
        configuration.engine.pingTimeout = heartbeat.timeout
        configuration.engine.maxPayload = 1_000_000
        configuration.socket.connectTimeout = connectTimeout
        configuration.socket.namespaces = ["/", "/custom"]
        configuration.socket.recovery = false
        // The suites open every session from one address, and the Engine.IO one never
        // connects a namespace: no anonymous caps below the session cap.
        configuration.anonymousSessionsMax = configuration.sessionsMax
        configuration.anonymousSessionsPerAddressMax = configuration.sessionsMax
        let socketIO = SocketIOServer(configuration: configuration, handler: Handler(), logger: logger)
        var echoConfiguration = configuration
        echoConfiguration.engineEcho = true
        let engineIO = SocketIOServer(configuration: echoConfiguration, handler: Echo(), logger: logger)

        let socketEndpoint = SocketIOEndpoint(server: socketIO, path: "/socket.io/", cors: .any)
        let engineEndpoint = SocketIOEndpoint(server: engineIO, path: "/engine.io/", cors: .any)
        let router = Router()
        socketEndpoint.addRoutes(to: router)
        engineEndpoint.addRoutes(to: router)
        return Application(
            router: router,
            server: .webSocketUpgrade(configuration: {
                var webSocket = WebSocketHTTPChannel.Configuration()
                webSocket.messageBytesMax = configuration.engine.maxPayload
                return webSocket
            }()) { uri, client in
                if uri == "/websocket-echo" { return { connection in echo(connection) } }
                return socketEndpoint.webSocketHandler(uri: uri, client: client) ?? engineEndpoint.webSocketHandler(uri: uri, client: client)
            },
            configuration: .init(address: .hostname(host, port: port), serverName: "chatlog-conformance"),
            services: [socketIO, engineIO],
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }
}
