import ChatModel
import HummingbirdSocketIO
import Journal
import Replication
import ServiceLifecycle
import SocketIO
import Synchronization

/// The committed side of the server: the room state as the journal has committed it, which
/// sockets are in which room, who is online where, and the commands waiting for their events
/// to be applied.
///
/// The `Tailer` is its only writer of room state and `position`; handlers read it (privacy
/// checks, `members`, `my-groups`) and change subscriptions. A socket subscribes to a room only
/// under the lock and only at `position`, after it has received (by replay) every event of the
/// room below it: the tailer fans out what it applies under the same lock, so a subscriber
/// gets each event once, live or replayed, in journal order.
///
/// Everything the chat layer sends to rooms (events, presence, typing) is queued on the
/// sockets under this lock, so each socket's stream has one order: with connection state
/// recovery, the offset an ephemeral event carries (`position - 1`) never runs ahead of the
/// journal events already queued for that socket.
///
/// Thread-safe: one `Mutex`, never held across a suspension or I/O (queueing a packet on a
/// socket takes the Socket.IO server's lock, which is never held while this one is taken).
final class LiveRooms: Sendable {
    /// One connected socket.
    struct Client: Sendable {
        var user: UserID?
        /// Rooms the socket receives live events of.
        var rooms: Set<RoomID> = []
        /// Rooms being replayed to it (they count toward `groupsPerConnectionMax`).
        var replaying: Set<RoomID> = []
        var bucket: TokenBucket
        var lastTyping: [RoomID: ContinuousClock.Instant] = [:]
    }

    struct State: ~Copyable {
        var rooms: RoomState
        /// Every event below this offset has been applied and fanned out.
        var position: Offset
        var subscribers: [RoomID: Set<SocketRef>] = [:]
        var clients: [SocketRef: Client] = [:]
        /// Sockets subscribed per user per room: a user is online in a room while it is above 0.
        var online: [RoomID: [UserID: Int]] = [:]
        /// Commands waiting for an offset to be applied.
        var waiters: [Waiter] = []
        /// Acks to send once an offset is applied (sends do not wait).
        var answers: [(offset: Offset, answer: PendingAnswer, since: ContinuousClock.Instant)] = []
        /// Set when the tailer stopped (the journal failed or closed): waiters get it at once.
        var failure: String?
    }

    /// A command's answer, sent by the tailer once the command's offset is applied.
    struct PendingAnswer: Sendable {
        let socket: SocketRef
        /// The client's ack id; nil: nothing to send on success, an `error` event on failure.
        let ackID: UInt64?
        let event: String
        let fields: [(String, JSONValue)]

        func succeed(on server: SocketIOServer) {
            guard let ackID else { return }
            server.ack(socket, id: ackID, [ChatWire.success(fields)])
        }

        func fail(_ reason: String, on server: SocketIOServer) {
            ChatWire.refuse(socket, event: event, ackID: ackID, code: "unavailable", message: reason, server: server)
        }
    }

    struct Waiter {
        let offset: Offset
        let continuation: CheckedContinuation<Result<Void, ChatFailure>, Never>
        let since: ContinuousClock.Instant
    }

    /// A Socket.IO packet and who receives it.
    struct Delivery {
        let packet: EnginePacket
        let recipients: [SocketRef]

        func send(on server: SocketIOServer) {
            ChatMetrics.deliveries.increment(by: recipients.count)
            server.send(packet, to: recipients)
        }
    }

    let state: Mutex<State>
    let limits: ChatServerLimits

    init(rooms: RoomState, position: Offset, limits: ChatServerLimits) {
        state = Mutex(State(rooms: rooms, position: position))
        self.limits = limits
    }

    var position: Offset { state.withLock { $0.position } }

    // MARK: Waiting for commands to commit

    /// Waits until the event at `offset` has been applied (committed, in the committed room
    /// state, and fanned out).
    func applied(_ offset: Offset) async -> Result<Void, ChatFailure> {
        await withCheckedContinuation { continuation in
            let now: Result<Void, ChatFailure>? = state.withLock { state in
                if offset < state.position { return .success(()) }
                if let failure = state.failure { return .failure(.unavailable(failure)) }
                state.waiters.append(Waiter(offset: offset, continuation: continuation, since: .now))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    /// Sends `answer` once `offset` is applied (at once if it is).
    func answer(_ answer: PendingAnswer, when offset: Offset, server: SocketIOServer) {
        state.withLock { state in
            if offset < state.position {
                answer.succeed(on: server)
            } else if let failure = state.failure {
                answer.fail(failure, on: server)
            } else {
                state.answers.append((offset, answer, .now))
            }
        }
    }

    // MARK: Clients

    func connect(_ socket: SocketRef, user: UserID?) {
        state.withLock { state in
            state.clients[socket] = Client(user: user, bucket: TokenBucket(rate: limits.eventsPerSecond, burst: limits.eventsBurst))
        }
    }

    /// Forgets a socket; its rooms get the presence notices.
    func disconnect(_ socket: SocketRef, recovery: Bool, server: SocketIOServer) {
        state.withLock { state in
            guard let client = state.clients.removeValue(forKey: socket) else { return }
            for room in client.rooms {
                if let delivery = Self.unsubscribe(socket, user: client.user, from: room, state: &state, recovery: recovery) {
                    delivery.send(on: server)
                }
            }
        }
    }

    /// Runs `body` on the socket's client record; nil when the socket is gone.
    func withClient<R>(_ socket: SocketRef, _ body: (inout Client) -> R) -> R? {
        state.withLock { state in
            guard var client = state.clients[socket] else { return nil }
            let result = body(&client)
            state.clients[socket] = client
            return result
        }
    }

    // MARK: Subscriptions

    enum SubscribeOutcome {
        /// Subscribed, live from this offset on (the presence notices are sent).
        case subscribed(Offset)
        /// Not yet: the room's events from the caller's cursor up to `position` must be
        /// replayed first.
        case behind(Offset)
        /// The socket is gone.
        case gone
    }

    /// Subscribes `socket` to `rooms` if it has received everything of them below `position`
    /// (`cursor` is the offset after the last event it has); the rooms hear who came online.
    /// Subscribes a socket that has every event of `rooms` below `cursor` (nil: it wants
    /// none of the past, so it is subscribed at the position, whatever the tailer applied
    /// since the caller last looked).
    func subscribe(_ socket: SocketRef, to rooms: Set<RoomID>, cursor: Offset?, recovery: Bool, server: SocketIOServer) -> SubscribeOutcome {
        state.withLock { state in
            guard var client = state.clients[socket] else { return .gone }
            let cursor = cursor ?? state.position
            guard cursor >= state.position else { return .behind(state.position) }
            var arrived: [RoomID] = []
            for room in rooms {
                client.replaying.remove(room)
                if client.rooms.insert(room).inserted { arrived.append(room) }
            }
            state.clients[socket] = client
            for room in arrived {
                state.subscribers[room, default: []].insert(socket)
                guard let user = client.user else { continue }
                let count = state.online[room, default: [:]][user, default: 0]
                state.online[room, default: [:]][user] = count + 1
                guard count == 0, let recipients = state.subscribers[room] else { continue }
                Delivery(packet: Self.presence("user-online", room: room, user: user, offset: Self.ephemeralOffset(state, recovery)),
                         recipients: Array(recipients)).send(on: server)
            }
            return .subscribed(cursor)
        }
    }

    /// Unsubscribes a socket from a room (it left); the room hears if its user went offline.
    func unsubscribe(_ socket: SocketRef, from room: RoomID, recovery: Bool, server: SocketIOServer) {
        state.withLock { state in
            guard var client = state.clients[socket] else { return }
            client.replaying.remove(room)
            guard client.rooms.remove(room) != nil else {
                state.clients[socket] = client
                return
            }
            state.clients[socket] = client
            Self.unsubscribe(socket, user: client.user, from: room, state: &state, recovery: recovery)?.send(on: server)
        }
    }

    /// Sends `user-typing` from a socket to its room, at most once per `typingInterval`.
    enum TypingOutcome { case sent, dropped, notInRoom, gone }

    func typing(_ socket: SocketRef, room: RoomID, recovery: Bool, server: SocketIOServer, now: ContinuousClock.Instant) -> TypingOutcome {
        state.withLock { state in
            guard var client = state.clients[socket], let user = client.user else { return .gone }
            guard client.rooms.contains(room) else { return .notInRoom }
            if let last = client.lastTyping[room], now - last < limits.typingInterval { return .dropped }
            client.lastTyping[room] = now
            state.clients[socket] = client
            let offset = Self.ephemeralOffset(state, recovery)
            let packet = EnginePacket.message(SocketPacket.encodeEvent("user-typing", namespace: "/") { output in
                output.string(user.value)
                if let offset { output.string(offset) }
            })
            server.send(packet, to: state.subscribers[room] ?? [])
            return .sent
        }
    }

    /// With connection state recovery, the offset an ephemeral event carries: the last one
    /// applied, so that a client recovering from it misses nothing ("-1" before any).
    static func ephemeralOffset(_ state: borrowing State, _ recovery: Bool) -> String? {
        guard recovery else { return nil }
        return state.position.value == 0 ? "-1" : String(state.position.value - 1)
    }

    private static func unsubscribe(_ socket: SocketRef, user: UserID?, from room: RoomID, state: inout State,
                                    recovery: Bool = false) -> Delivery? {
        state.subscribers[room]?.remove(socket)
        if state.subscribers[room]?.isEmpty == true { state.subscribers[room] = nil }
        guard let user, let count = state.online[room]?[user] else { return nil }
        if count > 1 {
            state.online[room]?[user] = count - 1
            return nil
        }
        state.online[room]?[user] = nil
        if state.online[room]?.isEmpty == true { state.online[room] = nil }
        guard let recipients = state.subscribers[room], !recipients.isEmpty else { return nil }
        return Delivery(packet: presence("user-offline", room: room, user: user, offset: ephemeralOffset(state, recovery)),
                        recipients: Array(recipients))
    }

    static func presence(_ name: String, room: RoomID, user: UserID, offset: String?) -> EnginePacket {
        .message(SocketPacket.encodeEvent(name, namespace: "/") { output in
            output.beginObject()
            output.key("group"); output.string(room.value)
            output.key("username"); output.string(user.value)
            output.endObject()
            if let offset { output.string(offset) }
        })
    }

    // MARK: The tailer's side

    /// Applies committed events (in offset order, ending before `end`), sends each to its
    /// room, and returns the waiters to resume. `recovery`: events carry their offset.
    func apply(_ events: [(Offset, ChatEvent)], end: Offset, recovery: Bool, server: SocketIOServer)
        -> [CheckedContinuation<Result<Void, ChatFailure>, Never>] {
        state.withLock { state in
            var deliveries: [Delivery] = []
            for (offset, event) in events {
                defer {
                    for delivery in deliveries { delivery.send(on: server) }
                    deliveries.removeAll(keepingCapacity: true)
                }
                state.rooms.apply(event, at: offset.value)
                if let recipients = state.subscribers[event.room], !recipients.isEmpty {
                    deliveries.append(Delivery(packet: ChatWire.packet(for: event, at: offset, recovery: recovery),
                                               recipients: Array(recipients)))
                }
                // Who is no longer a member stops receiving the room at once: a removed user's
                // sockets (told so), and a user who left, on all of their sockets.
                if let departed = event.departedMember, let recipients = state.subscribers[event.room] {
                    let theirs = recipients.filter { state.clients[$0]?.user == departed }
                    for socket in theirs {
                        state.clients[socket]?.rooms.remove(event.room)
                        if let notice = Self.unsubscribe(socket, user: departed, from: event.room, state: &state,
                                                         recovery: recovery) { deliveries.append(notice) }
                    }
                    if case .memberRemoved = event.body, !theirs.isEmpty {
                        let notice = EnginePacket.message(SocketPacket.encodeEvent("removed-from-group", namespace: "/") { output in
                            output.beginObject()
                            output.key("group"); output.string(event.room.value)
                            output.key("by"); output.string(event.actor.value)
                            output.endObject()
                            if recovery { output.string(String(offset.value)) }
                        })
                        deliveries.append(Delivery(packet: notice, recipients: Array(theirs)))
                    }
                }
            }
            precondition(end >= state.position, "the tailer went back from \(state.position) to \(end)")
            state.position = end
            // The senders' acks, after the events they sent went out (answers are registered
            // in about offset order, so the ready ones lead).
            if !state.answers.isEmpty {
                var kept = 0
                for index in state.answers.indices {
                    let (offset, answer, _) = state.answers[index]
                    if offset < end {
                        answer.succeed(on: server)
                    } else {
                        state.answers[kept] = state.answers[index]
                        kept += 1
                    }
                }
                state.answers.removeLast(state.answers.count - kept)
            }
            var ready: [CheckedContinuation<Result<Void, ChatFailure>, Never>] = []
            state.waiters.removeAll { waiter in
                guard waiter.offset < end else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return ready
        }
    }

    /// The tailer stopped: every waiter learns why, and so does every later one.
    func fail(_ reason: String, server: SocketIOServer) -> [CheckedContinuation<Result<Void, ChatFailure>, Never>] {
        state.withLock { state in
            if state.failure == nil { state.failure = reason }
            for (_, answer, _) in state.answers { answer.fail(reason, on: server) }
            state.answers.removeAll()
            defer { state.waiters.removeAll() }
            return state.waiters.map(\.continuation)
        }
    }

    var failure: String? { state.withLock { $0.failure } }

    /// Gives up on the commands that have waited since before `cutoff` for their events to
    /// commit (synchronous replicas that do not answer): their acks say `unavailable` with
    /// `reason`, and the waiters to resume are returned. Their events may still commit later
    /// (they are in the journal); a client that resends with its `client_id` then gets the
    /// original id.
    /// - Parameter cutoff: nil gives up on every waiting command.
    func expire(waitingSince cutoff: ContinuousClock.Instant?, reason: String, server: SocketIOServer)
        -> [CheckedContinuation<Result<Void, ChatFailure>, Never>] {
        state.withLock { state in
            state.answers.removeAll { pending in
                guard cutoff.map({ pending.since < $0 }) ?? true else { return false }
                pending.answer.fail(reason, on: server)
                return true
            }
            var expired: [CheckedContinuation<Result<Void, ChatFailure>, Never>] = []
            state.waiters.removeAll { waiter in
                guard cutoff.map({ waiter.since < $0 }) ?? true else { return false }
                expired.append(waiter.continuation)
                return true
            }
            return expired
        }
    }
}

/// With synchronous replicas: commands whose events are not durable on enough standbys within
/// `timeout` are answered `unavailable` (never acknowledged unreplicated); once this leader is
/// fenced, every waiting command is, at once: nothing more commits here.
final class ReplicationTimeouts: Service {
    let live: LiveRooms
    let socketIO: SocketIOServer
    let leader: ReplicationLeader
    let timeout: Duration
    let syncReplicas: Int
    /// How often waiting commands are checked.
    static let interval: Duration = .milliseconds(100)

    init(live: LiveRooms, socketIO: SocketIOServer, leader: ReplicationLeader, timeout: Duration, syncReplicas: Int) {
        self.live = live
        self.socketIO = socketIO
        self.leader = leader
        self.timeout = timeout
        self.syncReplicas = syncReplicas
    }

    func run() async throws {
        let reason = "not durable on \(syncReplicas) standby\(syncReplicas == 1 ? "" : "s") within \(timeout); it may still commit: resend with the same client_id to learn its id"
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: Self.interval)
                if case .fenced(let epoch) = self.leader.role {
                    let fenced = "this node was fenced by the leader of epoch \(epoch) before the command committed; send it to the new leader (with the same client_id)"
                    self.live.failWaiting(fenced, server: self.socketIO)
                    continue
                }
                self.live.failWaiting(reason, since: .now - self.timeout, server: self.socketIO)
            }
        }
    }
}

extension LiveRooms {
    /// Answers the commands waiting since before `cutoff` (all of them without one)
    /// `unavailable` with `reason` (see `expire`).
    func failWaiting(_ reason: String, since cutoff: ContinuousClock.Instant? = nil, server: SocketIOServer) {
        let expired = expire(waitingSince: cutoff, reason: reason, server: server)
        for waiter in expired { waiter.resume(returning: .failure(.unavailable(reason))) }
    }
}

/// Why a command could not be carried out, in the acks' terms.
enum ChatFailure: Error, Sendable {
    case unavailable(String)
}

/// A token bucket: `rate` tokens a second, at most `burst` held. A value type.
struct TokenBucket: Sendable {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var updated: ContinuousClock.Instant

    init(rate: Double, burst: Double, now: ContinuousClock.Instant = .now) {
        self.rate = rate
        self.burst = burst
        tokens = burst
        updated = now
    }

    /// The tokens held at `now`: those left, refilled at `rate` since the last take.
    private func tokens(at now: ContinuousClock.Instant) -> Double {
        let elapsed = now - updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return min(burst, tokens + seconds * rate)
    }

    /// Whether the bucket would be full at `now` (its owner has been idle long enough).
    func isFull(now: ContinuousClock.Instant = .now) -> Bool {
        tokens(at: now) >= burst
    }

    /// Takes a token if there is one.
    mutating func take(now: ContinuousClock.Instant = .now) -> Bool {
        tokens = tokens(at: now)
        updated = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
