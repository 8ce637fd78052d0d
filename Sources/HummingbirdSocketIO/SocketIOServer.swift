import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import SocketIO
import Synchronization

/// The Socket.IO server: every Engine.IO session with its Socket.IO session, and the
/// work the protocol state machines ask for.
///
/// Its state lives behind one lock (`State`, in a `Mutex`): the state machines run inside it
/// and never suspend; what may suspend (the application's handler, network writes) runs in
/// the task of the request or WebSocket concerned, from `AppCall`s the state hands back. So a
/// frame, the handler's call and its emit cost no task switch (an actor cost two hops per
/// call, there and back). Waiting (a held poll, an awaited ack, a flush) is a continuation
/// stored in the state and resumed by whoever changes it. It is also a `Service` whose `run`
/// drives the protocol timers (pings, ping and connect timeouts, ack timeouts).
public final class SocketIOServer: Service, Sendable {
    public struct Configuration: Sendable {
        public var engine = EngineConfiguration()
        public var socket = SocketSession.Configuration()
        /// WebSocket frames waiting to be written per connection; a client slower than this
        /// is disconnected rather than allowed to grow memory or slow a room.
        public var outboundQueueFramesMax = 1_024
        /// Bytes of frames waiting per WebSocket connection (`OutboundQueue.bytesCapacity`).
        public var outboundQueueBytesMax = 8 << 20
        /// Bytes waiting for all clients together, WebSocket queues and polling buffers
        /// (`OutboundBudget`): a client that would take it past this is disconnected.
        public var outboundBytesTotalMax = 512 << 20
        /// Sessions that have connected a namespace (authenticated) at once; new handshakes get
        /// 503 while this many are open. Sessions still to connect are capped on their own.
        public var sessionsMax = 10_000
        /// Sessions not yet connected to any namespace (so not authenticated), at once. A
        /// handshake past it closes the oldest such session rather than being refused, so
        /// that anonymous handshakes, however many, cannot keep a real client out: one that
        /// connects at once is never the oldest. They live at most `socket.connectTimeout`.
        public var anonymousSessionsMax = 1_000
        /// Sessions not yet connected from one client address at once (new handshakes from it
        /// beyond get 503): one source cannot take the anonymous pool.
        public var anonymousSessionsPerAddressMax = 32
        /// Granularity of the protocol timers.
        public var timerTick: Duration = .milliseconds(10)
        /// A bare Engine.IO echo server with no Socket.IO layer: every message is sent back.
        /// For the Engine.IO conformance suite only.
        public var engineEcho = false
        public init() {}
    }

    /// Work to do outside the lock.
    enum AppCall: Sendable {
        case authorize(ConnectRequest)
        case connected(SocketRef)
        case event(SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?)
        case disconnected(SocketRef, SocketSession.DisconnectReason)
    }

    /// What a WebSocket's writer takes from its queue.
    enum OutboundItem: Sendable {
        case packet(EnginePacket)
        /// A text packet's WebSocket frame, encoded once for many connections.
        case frame(EncodedFrame)
        /// Everything queued before has been written: tell the server (`writesFlushed`).
        case barrier

        /// What the item's frame carries, for the outbound limits.
        var bytes: Int {
            switch self {
            case .packet(let packet): packet.payloadBytes
            case .frame(let frame): frame.bytes.readableBytes
            case .barrier: 0
            }
        }
    }

    /// A WebSocket's outbound frames, bounded.
    struct Outbound: Sendable {
        let queue: OutboundQueue<OutboundItem>
        let id: Int
    }

    struct Connection: Sendable {
        var engine: EngineSession
        var socket: SocketSession
        var pendingPoll: CheckedContinuation<PollOutcome, Never>?
        /// Which request holds `pendingPoll`, so a late cancellation cannot end a newer poll.
        var pendingPollToken: String?
        /// Requests waiting for the WebSocket's queued frames to be written, oldest first.
        var flushWaiters: [CheckedContinuation<Void, Never>] = []
        var websocket: Outbound?
        var probe: Outbound?
    }

    public let configuration: Configuration
    let handler: any SocketIOHandler
    let logger: Logger
    /// What every client's outbound queue and polling buffer hold together.
    public let outboundBudget: OutboundBudget
    let state: Mutex<State>

    /// What polling POSTs delivered, per session, waiting for the session's worker (`run`): a
    /// POST is answered as soon as its payload is parsed, as the reference server does, and
    /// its handler calls run after, in order. A POST that waited for its handlers could
    /// deadlock a client that upgrades to WebSocket meanwhile: the client completes the
    /// upgrade only once its POST is answered, while a handler that waits for its events to
    /// leave (a replay) waits for that upgrade. A session has an entry while a worker runs.
    let postInboxes = Mutex<[String: PostInbox]>([:])

    struct PostInbox {
        var pending: [[AppCall]] = []
        /// POSTs held until the worker takes what is pending (`postsPendingMax`).
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// POST payloads a session may have waiting for its worker; a POST beyond them is answered
    /// only once the worker has taken them, which bounds what a client that POSTs faster than
    /// its handlers run can queue (a polling client sends one POST at a time otherwise).
    static let postsPendingMax = 64
    /// Sessions whose inbox needs a worker.
    let postWork = AsyncStream<String>.makeStream()

    struct AckKey: Hashable {
        let engineID: String
        let namespace: String
        let id: UInt64
    }

    public init(configuration: Configuration = Configuration(), handler: any SocketIOHandler, logger: Logger) {
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
        let budget = OutboundBudget(limit: configuration.outboundBytesTotalMax)
        self.outboundBudget = budget
        self.state = Mutex(State(configuration: configuration, budget: budget, logger: logger))
    }

    public var sessionCount: Int { state.withLock { $0.connections.count } }

    /// Open sessions by their current transport (a session that upgraded counts as WebSocket),
    /// for the `socketio_connections` metric: a walk over the sessions, for a scrape, not a hot path.
    public func sessionCounts() -> (polling: Int, websocket: Int) {
        state.withLock { state in
            var websocket = 0
            for connection in state.connections.values where connection.engine.transport == .websocket { websocket += 1 }
            return (state.connections.count - websocket, websocket)
        }
    }

    /// Clients disconnected because they did not read fast enough (their outbound queue filled).
    public static let slowClientsDisconnected = Counter(label: "socketio_slow_clients_disconnected_total")

    /// The socket id of a connection's namespace, when it is connected.
    func connectedSocketID(sid: String, namespace: String) -> String? {
        state.withLock { $0.connections[SessionID(sid)]?.socket.sockets[namespace] }
    }

    // MARK: Service: the timers

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask {
                // The timers stop with the graceful shutdown; then every session is closed, which
                // ends held polls and WebSockets so the HTTP server can finish.
                try? await cancelWhenGracefulShutdown {
                    while !Task.isCancelled {
                        try await Task.sleep(for: self.configuration.timerTick)
                        let calls = self.state.withLock { $0.tick(now: .now) }
                        await self.perform(calls)
                    }
                }
                await self.perform(self.state.withLock { $0.closeAll() })
                self.postWork.continuation.finish()
            }
            // A worker per session with POSTed work, for as long as it has some.
            for await sid in postWork.stream {
                group.addTask { await self.drainPosts(sid) }
            }
        }
    }

    // MARK: Application API

    /// Sends an event to one socket.
    public func emit(_ socket: SocketRef, event: String, _ arguments: [JSONValue]) {
        state.withLock { $0.emit(socket, event: event, arguments) }
    }

    /// Sends an event with the arguments of an event a client sent, copied as they came (no
    /// parsing when they came as text): relaying a message costs no JSON tree.
    public func emit(_ socket: SocketRef, event: String, relaying arguments: SocketEventArguments) {
        state.withLock { $0.emit(socket, event: event, relaying: arguments) }
    }

    /// Sends an event whose arguments `arguments` writes straight into the packet's text, with
    /// no `JSONValue` tree (text only). It runs under the server's lock: it must only write.
    public func emit(_ socket: SocketRef, event: String, writing arguments: (inout JSONOutput) -> Void) {
        state.withLock { state in
            state.send(to: socket) { $0.emit(namespace: socket.namespace, event: event, now: .now, writing: arguments) }
        }
    }

    /// Sends an event and waits for the client's acknowledgement, at most `timeout`.
    /// - Returns: the acknowledgement's arguments, or nil on timeout or disconnect.
    public func emitWithAck(_ socket: SocketRef, event: String, _ arguments: [JSONValue], timeout: Duration) async -> [JSONValue]? {
        await withCheckedContinuation { continuation in
            let waiting = state.withLock {
                $0.emitWithAck(socket, event: event, arguments, timeout: timeout, continuation: continuation)
            }
            if !waiting { continuation.resume(returning: nil) }
        }
    }

    /// Answers a client's acknowledgement request.
    public func ack(_ socket: SocketRef, id: UInt64, _ arguments: [JSONValue]) {
        state.withLock { $0.ack(socket, id: id, arguments) }
    }

    /// Answers acknowledgement requests encoded beforehand, in order, under one acquisition of
    /// the lock (a tailer's batch of acks): each goes the way an event to its socket goes, with
    /// no `JSONValue` tree and no encoding under the lock.
    public func ack(_ acks: [EncodedAck]) {
        guard !acks.isEmpty else { return }
        state.withLock { state in
            for ack in acks { state.send(ack.packet, frame: nil, to: ack.socket) }
        }
    }

    /// Sends an event, encoded once, to each of `sockets` that is still connected to the
    /// event's namespace. A broadcast's cost is then one encoding and one lock, whatever the
    /// number of recipients.
    public func send(_ event: EncodedEvent, to sockets: some Sequence<SocketRef>) {
        sendEach([(event, sockets)])
    }

    /// The same for an array of sockets (see `send(_:)` for arrays).
    public func send(_ event: EncodedEvent, to sockets: [SocketRef]) {
        sendEach([(event, sockets)])
    }

    /// Sends each event to its sockets, in order, under one acquisition of the lock (a
    /// tailer's batch: one lock per batch rather than per event, which the connections'
    /// frames contend for).
    public func send<Sockets: Sequence<SocketRef>>(_ events: [(event: EncodedEvent, sockets: Sockets)]) {
        sendEach(events)
    }

    /// The same for arrays of sockets (a tailer's batch): the generic one, called from another
    /// module, is not specialized and walks its sequences through protocol witnesses (each
    /// `SocketRef` copied through its value witness).
    public func send(_ events: [(event: EncodedEvent, sockets: [SocketRef])]) {
        sendEach(events)
    }

    private func sendEach<Sockets: Sequence<SocketRef>>(_ events: [(event: EncodedEvent, sockets: Sockets)]) {
        // WebSocket connections share one encoded frame; polling ones take the packet.
        let encoded = events.map { event, _ in
            let packet = event.packet
            return (packet, EncodedFrame.packet(packet))
        }
        state.withLock { state in
            for index in events.indices {
                let (packet, frame) = encoded[index]
                for socket in events[index].sockets { state.send(packet, frame: frame, to: socket) }
            }
        }
    }

    /// Waits until what was queued so far for the socket's connection has left the server:
    /// written on its WebSocket, or taken by a poll. Returns at once when nothing waits, and
    /// when the connection is gone. For a sender of many events (a replay) that must not
    /// overrun the bounded outbound queue.
    public func outboundDrained(_ socket: SocketRef) async {
        enum Wait { case none, websocket, polling }
        let wait: Wait = state.withLock { state in
            guard let connection = state.connections[SessionID(socket.engineID)] else { return .none }
            if connection.websocket != nil { return .websocket }
            return connection.engine.bufferedPacketCount == 0 ? .none : .polling
        }
        switch wait {
        case .none:
            return
        case .websocket:
            await websocketFlushed(sid: socket.engineID)
        case .polling:
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waiting = state.withLock { state in
                    guard let connection = state.connections[SessionID(socket.engineID)], connection.engine.bufferedPacketCount > 0 else {
                        return false
                    }
                    state.drainWaiters[socket.engineID, default: []].append(continuation)
                    return true
                }
                if !waiting { continuation.resume() }
            }
        }
    }

    /// New handshakes are refused with 503 from now on (shutdown).
    public func stopAccepting() {
        state.withLock { $0.accepting = false }
    }

    /// Closes every Engine.IO session, as the reference server's `io.close()` does: clients
    /// see their transport close and reconnect by themselves (to this server once it is back,
    /// or to whoever serves the address next). Returns once the handler has been told of each
    /// disconnect. A Socket.IO DISCONNECT would tell the official client the server meant it
    /// ("io server disconnect"), and it would not reconnect.
    public func closeAll() async {
        await perform(state.withLock { $0.closeAll() })
    }

    /// Disconnects a socket from its namespace.
    public func disconnect(_ socket: SocketRef) async {
        await perform(state.withLock { $0.disconnect(socket) })
    }

    // MARK: Carrying out actions

    func perform(_ calls: [AppCall]) async {
        // A loop rather than recursion (an authorization's calls run next, before the rest):
        // a task keeps the memory of the deepest chain of frames it ran until it ends.
        var calls = calls
        var next = 0
        while next < calls.count {
            let call = calls[next]
            next += 1
            switch call {
            case .authorize(let request):
                let decision = await handler.authorize(request)
                calls.insert(contentsOf: state.withLock { $0.decide(request, decision) }, at: next)
            case .connected(let socket):
                await handler.connected(socket, server: self)
            case .event(let socket, let name, let arguments, let ackID):
                await handler.event(socket, name: name, arguments: arguments, ackID: ackID, server: self)
            case .disconnected(let socket, let reason):
                await handler.disconnected(socket, reason: reason, server: self)
            }
        }
    }

    /// 20 characters of the URL-safe base-64 alphabet (120 random bits): session ids, socket
    /// ids, pids. Two draws of the system's generator, one system call each on Linux (one per
    /// character made a connection cost 80 getrandom calls).
    public static func randomID() -> String {
        var generator = SystemRandomNumberGenerator()
        let draws = (generator.next() as UInt64, generator.next() as UInt64)
        return String(unsafeUninitializedCapacity: 20) { characters in
            for index in 0..<20 {
                let draw = index < 10 ? draws.0 : draws.1
                characters[index] = idAlphabet[Int(truncatingIfNeeded: draw >> (6 * UInt64(index % 10))) & 63]
            }
            return 20
        }
    }

    private static let idAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
}

extension SocketSession {
    /// `transportClosed` as a non-mutating helper for a session being removed.
    func transportClosedActions() -> [Action] {
        var copy = self
        return copy.transportClosed()
    }
}
