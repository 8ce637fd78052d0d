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
    private let state: Mutex<State>

    /// What polling POSTs delivered, per session, waiting for the session's worker (`run`): a
    /// POST is answered as soon as its payload is parsed, as the reference server does, and
    /// its handler calls run after, in order. A POST that waited for its handlers could
    /// deadlock a client that upgrades to WebSocket meanwhile: the client completes the
    /// upgrade only once its POST is answered, while a handler that waits for its events to
    /// leave (a replay) waits for that upgrade. A session has an entry while a worker runs.
    private let postInboxes = Mutex<[String: PostInbox]>([:])

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
    private let postWork = AsyncStream<String>.makeStream()

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
        state.withLock { $0.connections[sid]?.socket.sockets[namespace] }
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

    /// Queues the handler calls of a polling POST for the session's worker; returns at once
    /// unless `postsPendingMax` payloads are waiting already.
    func enqueuePosted(sid: String, _ calls: [AppCall]) async {
        guard !calls.isEmpty else { return }
        enum Outcome { case startWorker, queued, full }
        let outcome = postInboxes.withLock { inboxes -> Outcome in
            guard var inbox = inboxes[sid] else {
                inboxes[sid] = PostInbox(pending: [calls])
                return .startWorker
            }
            inbox.pending.append(calls)
            inboxes[sid] = inbox
            return inbox.pending.count > Self.postsPendingMax ? .full : .queued
        }
        switch outcome {
        case .startWorker: postWork.continuation.yield(sid)
        case .queued: break
        case .full:
            await withCheckedContinuation { continuation in
                let waiting = postInboxes.withLock { inboxes -> Bool in
                    guard let inbox = inboxes[sid], inbox.pending.count > Self.postsPendingMax else { return false }
                    inboxes[sid]?.waiters.append(continuation)
                    return true
                }
                if !waiting { continuation.resume() }
            }
        }
    }

    /// Performs a WebSocket frame's calls after what the session's earlier POSTs delivered
    /// (a client that just upgraded may have POSTed events still queued): queued behind them
    /// while its worker runs, at once otherwise.
    /// - Returns: whether POSTed work was still queued (false: none is, or none was looked for).
    @discardableResult
    func performAfterPosted(sid: String, _ calls: [AppCall]) async -> Bool {
        guard !calls.isEmpty else { return true }
        let queued = postInboxes.withLock { inboxes in
            guard inboxes[sid] != nil else { return false }
            inboxes[sid]?.pending.append(calls)
            return true
        }
        if !queued { await perform(calls) }
        return queued
    }

    /// A session's worker: performs its queued calls in order until none is left.
    private func drainPosts(_ sid: String) async {
        while true {
            let (batch, waiters) = postInboxes.withLock { inboxes -> ([[AppCall]], [CheckedContinuation<Void, Never>]) in
                guard let inbox = inboxes[sid], !inbox.pending.isEmpty else {
                    let waiters = inboxes[sid]?.waiters ?? []
                    inboxes[sid] = nil
                    return ([], waiters)
                }
                inboxes[sid] = PostInbox()
                return (inbox.pending, inbox.waiters)
            }
            for waiter in waiters { waiter.resume() }
            if batch.isEmpty { return }
            for calls in batch { await perform(calls) }
        }
    }

    // MARK: Handshake and transports

    enum HandshakeResult {
        case opened(sid: String, open: EnginePacket)
        case full
    }

    /// - Parameter client: the client's address (`SocketIOEndpoint.clientAddress`), for the
    ///   per-address cap on anonymous sessions.
    func handshake(transport: EngineSession.Transport, client: String) -> HandshakeResult {
        state.withLock { $0.handshake(transport: transport, client: client) }
    }

    enum PollResult {
        case body(String)
        case unknownSession
        case rejected
    }

    /// How a poll ended, and the application calls its request must carry out.
    struct PollOutcome: Sendable {
        var result: PollResult
        var calls: [AppCall] = []
    }

    /// A GET on a polling session: answers at once or waits for packets. Deciding to hold the
    /// poll and registering it happen under one lock, so no packet can slip between them.
    func poll(sid: String, token: String) async -> (PollResult, [AppCall]) {
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<PollOutcome, Never>) in
            if let immediate = state.withLock({ $0.startPoll(sid: sid, token: token, continuation: continuation) }) {
                continuation.resume(returning: immediate)
            }
        }
        if case .rejected = outcome.result { await websocketFlushed(sid: sid) }
        return (outcome.result, outcome.calls)
    }

    /// A POST on a polling session.
    func post(sid: String, body: [UInt8]) -> (ok: Bool, known: Bool, calls: [AppCall]) {
        state.withLock { $0.post(sid: sid, body: body) }
    }

    /// A WebSocket opened: a new session (no sid) or an upgrade probe for an existing one.
    func attachWebSocket(sid: String?, client: String, queue: OutboundQueue<OutboundItem>) -> (sid: String, probe: Bool)? {
        state.withLock { $0.attachWebSocket(sid: sid, client: client, queue: queue) }
    }

    /// A frame from a WebSocket; `probe` while it is still upgrading.
    func frame(sid: String, packet: EnginePacket, probe: Bool) -> (probe: Bool, calls: [AppCall]) {
        state.withLock { $0.frame(sid: sid, packet: packet, probe: probe) }
    }

    func websocketClosed(sid: String, probe: Bool) -> [AppCall] {
        state.withLock { $0.websocketClosed(sid: sid, probe: probe) }
    }

    /// Waits until the frames queued so far on the session's WebSocket are written (or the
    /// session ends). A poll refused because the session moved to WebSocket is answered only
    /// then, which keeps causal order across the two connections: the client reads the
    /// `3probe` sent before the upgrade completed before it reads the 400.
    func websocketFlushed(sid: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            if !state.withLock({ $0.waitForFlush(sid: sid, continuation: continuation) }) { continuation.resume() }
        }
    }

    /// A WebSocket writer reached a `barrier`.
    func writesFlushed(sid: String) {
        state.withLock { $0.writesFlushed(sid: sid) }
    }

    /// The held poll's request was cancelled (its client went away): end the wait so the
    /// request task finishes, and let the next poll take its place.
    func pollAbandoned(sid: String, token: String) {
        state.withLock { $0.pollAbandoned(sid: sid, token: token) }
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

    /// Sends an event, encoded once, to each of `sockets` that is still connected to the
    /// event's namespace. A broadcast's cost is then one encoding and one lock, whatever the
    /// number of recipients.
    public func send(_ event: EncodedEvent, to sockets: some Sequence<SocketRef>) {
        // WebSocket connections share one encoded frame; polling ones take the packet.
        let packet = event.packet
        let frame = packet.textFrame.map(EncodedFrame.text)
        state.withLock { state in
            for socket in sockets { state.send(packet, frame: frame, to: socket) }
        }
    }

    /// Waits until what was queued so far for the socket's connection has left the server:
    /// written on its WebSocket, or taken by a poll. Returns at once when nothing waits, and
    /// when the connection is gone. For a sender of many events (a replay) that must not
    /// overrun the bounded outbound queue.
    public func outboundDrained(_ socket: SocketRef) async {
        enum Wait { case none, websocket, polling }
        let wait: Wait = state.withLock { state in
            guard let connection = state.connections[socket.engineID] else { return .none }
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
                    guard let connection = state.connections[socket.engineID], connection.engine.bufferedPacketCount > 0 else {
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
        for call in calls {
            switch call {
            case .authorize(let request):
                let decision = await handler.authorize(request)
                await perform(state.withLock { $0.decide(request, decision) })
            case .connected(let socket):
                await handler.connected(socket, server: self)
            case .event(let socket, let name, let arguments, let ackID):
                await handler.event(socket, name: name, arguments: arguments, ackID: ackID, server: self)
            case .disconnected(let socket, let reason):
                await handler.disconnected(socket, reason: reason, server: self)
            }
        }
    }

    public static func randomID() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var generator = SystemRandomNumberGenerator()
        return String((0..<20).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
    }

    /// Everything that changes: sessions, waiters. Only touched under the lock; its
    /// methods never suspend and never call the application.
    struct State: Sendable {
        let configuration: Configuration
        let logger: Logger
        var connections: [String: Connection] = [:]
        var ackWaiters: [AckKey: CheckedContinuation<[JSONValue]?, Never>] = [:]
        /// Senders waiting for a polling session's buffer to be taken (`outboundDrained`).
        var drainWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]
        var nextOutboundID = 0
        /// False once the server shuts down: new handshakes get 503.
        var accepting = true
        /// Application calls made by sends from synchronous callers (a client found too slow
        /// and disconnected while being sent to): carried out by the timer service's next tick.
        var deferredCalls: [AppCall] = []
        /// Polling sessions the client closed while no poll waited, and when: the poll it sent
        /// alongside the close may reach the server just after it, and gets a noop rather than
        /// 400 for `clientClosedPollGrace`.
        var clientClosed: [String: ContinuousClock.Instant] = [:]
        static let clientClosedPollGrace: Duration = .seconds(1)
        /// Sessions not connected to a namespace yet: their client's address and when they
        /// opened (`Configuration.anonymousSessionsMax`).
        var anonymous: [String: (client: String, opened: ContinuousClock.Instant)] = [:]
        var anonymousByClient: [String: Int] = [:]

        let budget: OutboundBudget

        init(configuration: Configuration, budget: OutboundBudget, logger: Logger) {
            self.configuration = configuration
            self.budget = budget
            self.logger = logger
        }

        /// Runs `body` on the session's connection in place, or returns nil when there is none.
        /// (Copying a connection out of the dictionary and back would copy its sessions' storage
        /// on every frame: they are then shared while being changed. Reads on the hot path come
        /// through here too, as the dictionary's getter copies the whole connection.)
        /// A polling buffer's change in size is counted in the outbound budget here, where every
        /// change passes.
        mutating func modify<R>(_ sid: String, _ body: (inout Connection) -> R) -> R? {
            guard let index = connections.index(forKey: sid) else { return nil }
            return Self.counting(&connections.values[index], in: budget, body)
        }

        /// Runs `body` on `connection` in place and counts its polling buffer's change. The
        /// sizes are read through the `inout` access: read through the dictionary's getter,
        /// each read copied the whole connection (a quarter more CPU per delivery).
        static func counting<R>(_ connection: inout Connection, in budget: OutboundBudget, _ body: (inout Connection) -> R) -> R {
            let before = connection.engine.bufferedBytes
            let result = body(&connection)
            budget.adjust(by: connection.engine.bufferedBytes - before)
            return result
        }

        /// Past the outbound budget, a polling client with packets waiting is too slow: closed.
        mutating func closeIfOverBudget(_ sid: String) -> [AppCall] {
            guard budget.isExceeded, let waiting = connections[sid]?.engine.bufferedPacketCount, waiting > 0,
                  let actions = modify(sid, { $0.engine.closeTooSlow() }) else { return [] }
            logger.warning("socket.io client too slow while the outbound budget is spent; closing", metadata: ["socketio.sid": "\(sid)"])
            SocketIOServer.slowClientsDisconnected.increment()
            return apply(actions, to: sid)
        }

        /// Closes every session (server shutdown).
        mutating func closeAll() -> [AppCall] {
            var calls: [AppCall] = []
            for sid in Array(connections.keys) {
                guard let actions = modify(sid, { $0.engine.close() }) else { continue }
                calls += apply(actions, to: sid)
            }
            return calls
        }

        mutating func tick(now: ContinuousClock.Instant) -> [AppCall] {
            var calls: [AppCall] = deferredCalls
            deferredCalls = []
            if !clientClosed.isEmpty { clientClosed = clientClosed.filter { now - $0.value < Self.clientClosedPollGrace } }
            // Only sessions with a timer due are touched; the others are just looked at.
            let due = connections.compactMap { id, connection in isDue(connection, now: now) ? id : nil }
            for id in due { calls += fireTimers(id, now: now) }
            return calls
        }

        /// Whether one of a connection's timers is due. An Engine.IO echo server has no
        /// Socket.IO layer, so its Socket.IO timers (the connect timeout) do not count.
        func isDue(_ connection: Connection, now: ContinuousClock.Instant) -> Bool {
            connection.engine.nextDeadline.map { $0 <= now } == true
                || (!configuration.engineEcho && connection.socket.nextDeadline.map { $0 <= now } == true)
        }

        mutating func fireTimers(_ sid: String, now: ContinuousClock.Instant) -> [AppCall] {
            let echo = configuration.engineEcho
            guard let (engineActions, socketActions) = modify(sid, { connection in
                (connection.engine.timerFired(now: now), echo ? [] : connection.socket.timerFired(now: now))
            }) else { return [] }
            return apply(engineActions, to: sid) + apply(socketActions, to: sid)
        }

        mutating func handshake(transport: EngineSession.Transport, client: String) -> HandshakeResult {
            guard accepting, connections.count - anonymous.count < configuration.sessionsMax,
                  anonymousByClient[client, default: 0] < configuration.anonymousSessionsPerAddressMax else { return .full }
            if anonymous.count >= configuration.anonymousSessionsMax,
               let oldest = anonymous.min(by: { $0.value.opened < $1.value.opened })?.key,
               let actions = modify(oldest, { $0.engine.close() }) {
                logger.debug("anonymous session closed for a newer one", metadata: ["socketio.sid": "\(oldest)"])
                deferredCalls += apply(actions, to: oldest)
            }
            let sid = SocketIOServer.randomID()
            anonymous[sid] = (client, .now)
            anonymousByClient[client, default: 0] += 1
            let now = ContinuousClock.now
            let (engine, open) = EngineSession.open(sid: sid, transport: transport, configuration: configuration.engine, now: now)
            connections[sid] = Connection(engine: engine, socket: SocketSession(configuration: configuration.socket, openedAt: now))
            logger.debug("engine.io session opened", metadata: ["socketio.sid": "\(sid)", "socketio.transport": "\(transport)"])
            return .opened(sid: sid, open: open)
        }

        /// Runs one session's timers now if any is due, so that a request arriving just after a
        /// deadline sees the session as the deadline left it, whatever the tick's lag.
        mutating func fireTimersIfDue(_ sid: String) -> [AppCall] {
            let now = ContinuousClock.now
            guard let connection = connections[sid], isDue(connection, now: now) else { return [] }
            return fireTimers(sid, now: now)
        }

        /// Starts a poll: its outcome when it ends at once, or nil once `continuation` holds it.
        mutating func startPoll(sid: String, token: String, continuation: CheckedContinuation<PollOutcome, Never>) -> PollOutcome? {
            let expired = fireTimersIfDue(sid)
            guard let arrival = modify(sid, { $0.engine.pollArrived(now: .now) }) else {
                // The poll a client sent alongside its close, arriving just after it: the noop
                // the close owes it (the official suite sends both at once).
                if clientClosed.removeValue(forKey: sid) != nil {
                    return PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)])), calls: expired)
                }
                return PollOutcome(result: .unknownSession, calls: expired)
            }
            switch arrival {
            case .answer(let body):
                // The poll takes the buffer (or its first packets): whoever waits for it to drain
                // goes on when it is empty.
                resumeDrainWaitersIfDrained(sid)
                return PollOutcome(result: .body(body), calls: expired)
            case .reject(let actions):
                return PollOutcome(result: .rejected, calls: expired + apply(actions, to: sid))
            case .hold:
                if !expired.isEmpty {
                    // Timers that fired just now left work for the application (in practice they
                    // close the session first, so this does not happen): end this poll with a
                    // noop, so that the request carries the work out, and let the client poll again.
                    connections[sid]?.engine.pollAbandoned()
                    return PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)])), calls: expired)
                }
                // A request cancelled before this point is not released by `pollAbandoned`
                // (nothing was held yet); its flag is set before its cancellation handler runs,
                // and both run under the lock, so one of the two sees the other.
                if Task.isCancelled {
                    connections[sid]?.engine.pollAbandoned()
                    return PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)])))
                }
                connections[sid]?.pendingPoll = continuation
                connections[sid]?.pendingPollToken = token
                return nil
            }
        }

        /// A POST on a polling session.
        mutating func post(sid: String, body: [UInt8]) -> (ok: Bool, known: Bool, calls: [AppCall]) {
            let expired = fireTimersIfDue(sid)
            let pollWaiting = connections[sid]?.pendingPoll != nil
            guard let (ok, actions) = modify(sid, { $0.engine.postArrived(body) }) else { return (false, false, expired) }
            let calls = expired + apply(actions, to: sid)
            if !pollWaiting, actions.contains(.closed(.clientClosed)) { clientClosed[sid] = .now }
            return (ok, true, calls)
        }

        /// A WebSocket opened: a new session (no sid) or an upgrade probe for an existing one.
        mutating func attachWebSocket(sid: String?, client: String, queue: OutboundQueue<OutboundItem>) -> (sid: String, probe: Bool)? {
            nextOutboundID += 1
            let outbound = Outbound(queue: queue, id: nextOutboundID)
            if let sid {
                guard let (accepted, actions) = modify(sid, { connection -> (Bool, [EngineSession.Action]) in
                    guard connection.probe == nil else { return (false, []) }
                    let (accepted, actions) = connection.engine.probeAttached(now: .now)
                    if accepted { connection.probe = outbound }
                    return (accepted, actions)
                }), accepted else { return nil }
                let calls = apply(actions, to: sid)
                precondition(calls.isEmpty, "ending a poll for an upgrade produces no application calls")
                return (sid, true)
            }
            guard case .opened(let newSID, let open) = handshake(transport: .websocket, client: client) else { return nil }
            connections[newSID]?.websocket = outbound
            write([open], to: outbound, sid: newSID)
            return (newSID, false)
        }

        /// A frame from a WebSocket; `probe` while it is still upgrading.
        mutating func frame(sid: String, packet: EnginePacket, probe: Bool) -> (probe: Bool, calls: [AppCall]) {
            guard let (stillProbing, actions) = modify(sid, { connection -> (Bool, [EngineSession.Action]) in
                guard probe, connection.engine.transport == .polling else { return (false, connection.engine.frameArrived(packet)) }
                let actions = connection.engine.probeFrameArrived(packet)
                if connection.engine.transport == .websocket {
                    connection.websocket = connection.probe
                    connection.probe = nil
                }
                return (connection.engine.transport != .websocket, actions)
            }) else { return (probe, []) }
            return (stillProbing, apply(actions, to: sid))
        }

        mutating func websocketClosed(sid: String, probe: Bool) -> [AppCall] {
            guard let actions = modify(sid, { connection in
                if probe { connection.probe = nil }
                return connection.engine.transportClosed(probe: probe)
            }) else { return [] }
            return apply(actions, to: sid)
        }

        /// Queues a barrier on the session's WebSocket and holds `continuation` until the writer
        /// reaches it; false when there is nothing to wait for.
        mutating func waitForFlush(sid: String, continuation: CheckedContinuation<Void, Never>) -> Bool {
            guard let outbound = connections[sid]?.websocket, case .enqueued = outbound.queue.yield(.barrier) else { return false }
            connections[sid]?.flushWaiters.append(continuation)
            return true
        }

        /// A WebSocket writer reached a `barrier`.
        mutating func writesFlushed(sid: String) {
            guard connections[sid]?.flushWaiters.isEmpty == false else { return }
            connections[sid]?.flushWaiters.removeFirst().resume()
        }

        /// The held poll's request was cancelled (its client went away): end the wait so the
        /// request task finishes, and let the next poll take its place.
        mutating func pollAbandoned(sid: String, token: String) {
            guard connections[sid]?.pendingPollToken == token else { return }
            connections[sid]?.engine.pollAbandoned()
            connections[sid]?.pendingPoll?.resume(returning: PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)]))))
            connections[sid]?.pendingPoll = nil
        }

        /// Sends an event to one socket.
        mutating func emit(_ socket: SocketRef, event: String, _ arguments: [JSONValue]) {
            send(to: socket) { $0.emit(namespace: socket.namespace, event: event, arguments: arguments, now: .now).actions }
        }

        mutating func emit(_ socket: SocketRef, event: String, relaying arguments: SocketEventArguments) {
            send(to: socket) { $0.emit(namespace: socket.namespace, event: event, relaying: arguments, now: .now) }
        }

        /// Sends an already encoded packet to a socket still connected to its namespace; on a
        /// WebSocket, as `frame` (the packet's frame payload, shared by every recipient).
        mutating func send(_ packet: EnginePacket, frame: EncodedFrame?, to socket: SocketRef) {
            enum Route { case frame(Outbound), engine([EngineSession.Action]) }
            guard let route = modify(socket.engineID, { connection -> Route? in
                guard connection.socket.sockets[socket.namespace] == socket.socketID else { return nil }
                if frame != nil, connection.engine.transport == .websocket, let outbound = connection.websocket {
                    return .frame(outbound)  // what `engine.send` would ask for, without the copy
                }
                return .engine(connection.engine.send([packet]))
            }) ?? nil else { return }
            switch route {
            case .frame(let outbound):
                guard let frame else { return }
                if case .dropped = outbound.queue.yield(.frame(frame)) {
                    deferredCalls += tooSlow(outbound, sid: socket.engineID)
                }
            case .engine(let actions):
                deferredCalls += apply(actions, to: socket.engineID)
                deferredCalls += closeIfOverBudget(socket.engineID)
            }
        }

        /// Carries out what the socket's session does to emit (`emit` asks it): sends, and
        /// nothing for the application.
        mutating func send(to socket: SocketRef, _ emit: (inout SocketSession) -> [SocketSession.Action]) {
            guard let actions = modify(socket.engineID, { emit(&$0.socket) }) else { return }
            deferredCalls += apply(actions, to: socket.engineID)
        }

        /// Emits with an ack request and registers `continuation` for the answer; false when
        /// the socket is gone (nothing was sent).
        mutating func emitWithAck(_ socket: SocketRef, event: String, _ arguments: [JSONValue], timeout: Duration,
                         continuation: CheckedContinuation<[JSONValue]?, Never>) -> Bool {
            guard let (actions, id) = modify(socket.engineID, {
                $0.socket.emit(namespace: socket.namespace, event: event, arguments: arguments, ackTimeout: timeout, now: .now)
            }) else { return false }
            deferredCalls += apply(actions, to: socket.engineID)
            guard let id else { return false }
            ackWaiters[AckKey(engineID: socket.engineID, namespace: socket.namespace, id: id)] = continuation
            return true
        }

        /// Answers a client's acknowledgement request.
        mutating func ack(_ socket: SocketRef, id: UInt64, _ arguments: [JSONValue]) {
            guard let actions = modify(socket.engineID, { $0.socket.ack(namespace: socket.namespace, id: id, arguments: arguments) }) else {
                return
            }
            deferredCalls += apply(actions, to: socket.engineID)
        }

        mutating func disconnect(_ socket: SocketRef) -> [AppCall] {
            guard let actions = modify(socket.engineID, { $0.socket.disconnect(namespace: socket.namespace, now: .now) }) else { return [] }
            return apply(actions, to: socket.engineID)
        }

        mutating func decide(_ request: ConnectRequest, _ decision: ConnectDecision) -> [AppCall] {
            guard let actions = modify(request.engineID, { connection in
                switch decision {
                case .accept(let pid):
                    connection.socket.accept(namespace: request.namespace, socketID: SocketIOServer.randomID(), pid: pid)
                case .refuse(let message, let data):
                    connection.socket.refuse(namespace: request.namespace, message: message, data: data)
                }
            }) else { return [] }
            return apply(actions, to: request.engineID)
        }

        mutating func apply(_ actions: [EngineSession.Action], to sid: String) -> [AppCall] {
            var calls: [AppCall] = []
            for action in actions {
                switch action {
                case .answerPoll(let body):
                    connections[sid]?.pendingPoll?.resume(returning: PollOutcome(result: .body(body)))
                    connections[sid]?.pendingPoll = nil
                case .rejectPoll:
                    connections[sid]?.pendingPoll?.resume(returning: PollOutcome(result: .rejected))
                    connections[sid]?.pendingPoll = nil
                case .closeProbe:
                    connections[sid]?.probe?.queue.finish()
                    connections[sid]?.probe = nil
                case .writeFrames(let packets):
                    if let outbound = modify(sid, { $0.websocket }) ?? nil { calls += write(packets, to: outbound, sid: sid) }
                case .writeProbeFrames(let packets):
                    if let outbound = modify(sid, { $0.probe }) ?? nil { calls += write(packets, to: outbound, sid: sid) }
                case .deliver(let payloads) where configuration.engineEcho:
                    guard let echo = modify(sid, { $0.engine.send(payloads.map { EnginePacket(.message, $0) }) }) else { break }
                    calls += apply(echo, to: sid)
                case .deliver(let payloads):
                    let now = ContinuousClock.now
                    for payload in payloads {
                        guard let socketActions = modify(sid, { $0.socket.received(payload, now: now) }) else { break }
                        calls += apply(socketActions, to: sid)
                    }
                case .closed(let reason):
                    // A polling client whose buffer overflowed (a WebSocket one is counted in `tooSlow`).
                    if reason == .tooSlow { SocketIOServer.slowClientsDisconnected.increment() }
                    calls += closeConnection(sid, reason: reason)
                }
            }
            resumeDrainWaitersIfDrained(sid)
            return calls
        }

        /// Resumes `outboundDrained` waiters of a session whose polling buffer is empty (or
        /// that is gone).
        mutating func resumeDrainWaitersIfDrained(_ sid: String) {
            guard !drainWaiters.isEmpty, connections[sid].map({ $0.engine.bufferedPacketCount == 0 }) ?? true,
                  let waiters = drainWaiters.removeValue(forKey: sid) else { return }
            for waiter in waiters { waiter.resume() }
        }

        mutating func apply(_ actions: [SocketSession.Action], to sid: String) -> [AppCall] {
            var calls: [AppCall] = []
            for action in actions {
                switch action {
                case .send(let packets):
                    guard let engineActions = modify(sid, { $0.engine.send(packets) }) else { continue }
                    calls += apply(engineActions, to: sid)
                    calls += closeIfOverBudget(sid)
                case .authorize(let namespace, let auth, let recovery):
                    calls.append(.authorize(ConnectRequest(engineID: sid, namespace: namespace, auth: auth, recovery: recovery)))
                case .event(let namespace, let name, let arguments, let ackID):
                    guard let socketID = modify(sid, { $0.socket.sockets[namespace] }) ?? nil else { continue }
                    calls.append(.event(SocketRef(engineID: sid, namespace: namespace, socketID: socketID),
                                        name: name, arguments: arguments, ackID: ackID))
                case .ackReceived(let namespace, let id, let arguments):
                    ackWaiters.removeValue(forKey: AckKey(engineID: sid, namespace: namespace, id: id))?.resume(returning: arguments)
                case .ackTimedOut(let namespace, let id):
                    ackWaiters.removeValue(forKey: AckKey(engineID: sid, namespace: namespace, id: id))?.resume(returning: nil)
                case .connected(let namespace, let socketID):
                    forgetAnonymous(sid)
                    calls.append(.connected(SocketRef(engineID: sid, namespace: namespace, socketID: socketID)))
                case .disconnected(let namespace, let socketID, let reason):
                    calls += forget(SocketRef(engineID: sid, namespace: namespace, socketID: socketID), reason: reason)
                case .closeConnection(let reason):
                    guard let engineActions = modify(sid, { $0.engine.close() }) else { continue }
                    logger.info("socket.io connection closed", metadata: ["socketio.sid": "\(sid)", "socketio.reason": "\(reason)"])
                    calls += apply(engineActions, to: sid)
                }
            }
            return calls
        }

        /// Fails a disconnected socket's pending acks.
        mutating func forget(_ socket: SocketRef, reason: SocketSession.DisconnectReason) -> [AppCall] {
            for key in ackWaiters.keys where key.engineID == socket.engineID && key.namespace == socket.namespace {
                ackWaiters.removeValue(forKey: key)?.resume(returning: nil)
            }
            return [.disconnected(socket, reason)]
        }

        /// The session connected a namespace, or closed: it no longer counts as anonymous.
        mutating func forgetAnonymous(_ sid: String) {
            guard let (client, _) = anonymous.removeValue(forKey: sid) else { return }
            let left = anonymousByClient[client, default: 1] - 1
            anonymousByClient[client] = left > 0 ? left : nil
        }

        mutating func closeConnection(_ sid: String, reason: EngineSession.CloseReason) -> [AppCall] {
            guard let connection = connections.removeValue(forKey: sid) else { return [] }
            forgetAnonymous(sid)
            logger.debug("engine.io session closed", metadata: ["socketio.sid": "\(sid)", "socketio.reason": "\(reason)"])

            connection.pendingPoll?.resume(returning: PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)]))))
            for waiter in connection.flushWaiters { waiter.resume() }
            connection.websocket?.queue.finish()
            connection.probe?.queue.finish()
            // Only disconnects follow; they need no connection.
            return apply(connection.socket.transportClosedActions(), to: sid)
        }

        /// Queues packets on a WebSocket. A client whose queue is full is too slow: its queue is
        /// aborted (the connection dropped) and its session closed at once, so that it never
        /// holds up its rooms; returns the calls that closing makes.
        @discardableResult
        mutating func write(_ packets: [EnginePacket], to outbound: Outbound, sid: String) -> [AppCall] {
            for packet in packets {
                if case .dropped = outbound.queue.yield(.packet(packet)) { return tooSlow(outbound, sid: sid) }
            }
            return []
        }

        /// Drops a WebSocket client whose queue is full and closes its session.
        mutating func tooSlow(_ outbound: Outbound, sid: String) -> [AppCall] {
            logger.warning("socket.io client too slow; closing", metadata: ["socketio.sid": "\(sid)"])
            SocketIOServer.slowClientsDisconnected.increment()
            outbound.queue.abort()
            guard let actions = modify(sid, { $0.engine.transportClosed() }) else { return [] }
            return apply(actions, to: sid)
        }
    }
}

extension SocketSession {
    /// `transportClosed` as a non-mutating helper for a session being removed.
    func transportClosedActions() -> [Action] {
        var copy = self
        return copy.transportClosed()
    }
}
