import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import SocketIO
import Synchronization

extension SocketIOServer {
    /// Everything that changes: sessions, waiters. Only touched under the lock; its
    /// methods never suspend and never call the application.
    struct State: Sendable {
        let configuration: Configuration
        let logger: Logger
        var connections: [SessionID: Connection] = [:]
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
            guard let index = connections.index(forKey: SessionID(sid)) else { return nil }
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
            guard budget.isExceeded, let waiting = connections[SessionID(sid)]?.engine.bufferedPacketCount, waiting > 0,
                  let actions = modify(sid, { $0.engine.closeTooSlow() }) else { return [] }
            logger.warning("socket.io client too slow while the outbound budget is spent; closing", metadata: ["socketio.sid": "\(sid)"])
            SocketIOServer.slowClientsDisconnected.increment()
            return apply(actions, to: sid)
        }

        /// Closes every session (server shutdown).
        mutating func closeAll() -> [AppCall] {
            var calls: [AppCall] = []
            for sid in connections.keys.map(\.string) {
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
            let due = connections.compactMap { id, connection in isDue(connection, now: now) ? id.string : nil }
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
            connections[SessionID(sid)] = Connection(engine: engine, socket: SocketSession(configuration: configuration.socket, openedAt: now))
            logger.debug("engine.io session opened", metadata: ["socketio.sid": "\(sid)", "socketio.transport": "\(transport)"])
            return .opened(sid: sid, open: open)
        }

        /// Runs one session's timers now if any is due, so that a request arriving just after a
        /// deadline sees the session as the deadline left it, whatever the tick's lag.
        mutating func fireTimersIfDue(_ sid: String) -> [AppCall] {
            let now = ContinuousClock.now
            guard let connection = connections[SessionID(sid)], isDue(connection, now: now) else { return [] }
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
                    connections[SessionID(sid)]?.engine.pollAbandoned()
                    return PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)])), calls: expired)
                }
                // A request cancelled before this point is not released by `pollAbandoned`
                // (nothing was held yet); its flag is set before its cancellation handler runs,
                // and both run under the lock, so one of the two sees the other.
                if Task.isCancelled {
                    connections[SessionID(sid)]?.engine.pollAbandoned()
                    return PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)])))
                }
                connections[SessionID(sid)]?.pendingPoll = continuation
                connections[SessionID(sid)]?.pendingPollToken = token
                return nil
            }
        }

        /// A POST on a polling session.
        mutating func post(sid: String, body: [UInt8]) -> (ok: Bool, known: Bool, calls: [AppCall]) {
            let expired = fireTimersIfDue(sid)
            let pollWaiting = connections[SessionID(sid)]?.pendingPoll != nil
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
            connections[SessionID(newSID)]?.websocket = outbound
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
            guard let outbound = connections[SessionID(sid)]?.websocket, case .enqueued = outbound.queue.yield(.barrier) else { return false }
            connections[SessionID(sid)]?.flushWaiters.append(continuation)
            return true
        }

        /// A WebSocket writer reached a `barrier`.
        mutating func writesFlushed(sid: String) {
            guard connections[SessionID(sid)]?.flushWaiters.isEmpty == false else { return }
            connections[SessionID(sid)]?.flushWaiters.removeFirst().resume()
        }

        /// The held poll's request was cancelled (its client went away): end the wait so the
        /// request task finishes, and let the next poll take its place.
        mutating func pollAbandoned(sid: String, token: String) {
            guard connections[SessionID(sid)]?.pendingPollToken == token else { return }
            connections[SessionID(sid)]?.engine.pollAbandoned()
            connections[SessionID(sid)]?.pendingPoll?.resume(returning: PollOutcome(result: .body(EnginePacket.encodePayload([EnginePacket(.noop)]))))
            connections[SessionID(sid)]?.pendingPoll = nil
        }
    }
}

/// An Engine.IO session id as the sessions' key. Every frame, delivery and ack looks its
/// session up, several times over, and a `String` key is hashed whole each time (about 300
/// instructions for 20 characters). A session id is 20 characters drawn by the server from
/// 64 at random (`randomID`), so its first eight bytes are already 48 random bits: they
/// alone are hashed (ids that share them only share a bucket). Equality still compares the whole id, and a client cannot choose the
/// ids that are inserted, so it cannot crowd them into one bucket.
struct SessionID: Hashable, Sendable {
    let string: String

    init(_ string: String) {
        self.string = string
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(Self.prefix(string))
    }

    /// The first eight bytes of `string` (fewer when it is shorter), little-endian: read as one
    /// word from a native string's contiguous bytes.
    static func prefix(_ string: String) -> UInt64 {
        let contiguous: UInt64? = string.utf8.withContiguousStorageIfAvailable { bytes in
            guard bytes.count >= 8, let base = bytes.baseAddress else { return littleEndian(bytes) }
            return UInt64(littleEndian: UnsafeRawPointer(base).loadUnaligned(as: UInt64.self))
        }
        return contiguous ?? littleEndian(string.utf8.prefix(8))
    }

    private static func littleEndian(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var word: UInt64 = 0
        var shift: UInt64 = 0
        for byte in bytes.prefix(8) {
            word |= UInt64(byte) << shift
            shift += 8
        }
        return word
    }

    static func == (lhs: SessionID, rhs: SessionID) -> Bool { lhs.string == rhs.string }
}
