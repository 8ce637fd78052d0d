import ChatModel
import HummingbirdSocketIO
import Journal
import SocketIO
import Synchronization

/// The committed side of the server: the room state as the journal has committed it, which
/// sockets are in which room, who is online where, and what waits for commands to be applied.
///
/// The `Tailer` is its only writer of room state and `position` (`apply`); everyone else reads
/// through its queries and changes subscriptions. A socket subscribes to a room only under the
/// lock and only at `position`, after it has received (by replay) every event of the room
/// below it: the tailer fans out what it applies under the same lock, so a subscriber gets
/// each event once, live or replayed, in journal order.
///
/// Everything the chat layer sends to rooms (events, presence, typing) is queued on the
/// sockets under this lock, so each socket's stream has one order: with connection state
/// recovery, the offset an ephemeral event carries (`position - 1`) never runs ahead of the
/// journal events already queued for that socket.
///
/// Thread-safe: a `Mutex` for the state, never held across a suspension or I/O (queueing a
/// packet on a socket takes the Socket.IO server's lock, which is never held while this one is
/// taken). What every send touches is kept apart from it, because the tailer holds it while
/// it fans out a whole batch: the position in an atomic (back-pressure), each socket's rate
/// limit and user in a lock of their own (`admit`), and the waiting acks in another
/// (`CommitWaiters`). Those two are taken inside the state's lock or alone, never around it.
final class LiveRooms: Sendable {
    /// One connected socket.
    struct Client: Sendable {
        var user: UserID?
        /// When the token it connected with was issued (ms; nil in development mode).
        var tokenIssuedMs: Int64?
        /// Rooms the socket receives live events of.
        var rooms: Set<RoomID> = []
        /// Rooms being replayed to it (they count toward `groupsPerConnectionMax`).
        var replaying: Set<RoomID> = []
        var lastTyping: [RoomID: ContinuousClock.Instant] = [:]
        /// Rooms it resumed in at an offset past this node's position (it had read them on a
        /// node further ahead: a standby behind its leader, after a failover): their events
        /// below the offset are not sent to it again.
        var resumeAt: [RoomID: Offset] = [:]
    }

    /// What every event of a socket checks first: its rate limit and its user (a copy of
    /// `Client.user`, written with it).
    struct Gate {
        var user: UserID?
        var bucket: TokenBucket
    }

    private struct State: ~Copyable {
        var rooms: RoomState
        /// Every event below this offset has been applied and fanned out.
        var position: Offset
        var subscribers: [RoomID: Set<SocketRef>] = [:]
        var clients: [SocketRef: Client] = [:]
        /// The sockets with a `resumeAt` (almost always none: the fan-out checks only then).
        var resumedAhead: Set<SocketRef> = []
        /// Sockets subscribed per user per room: a user is online in a room while it is above 0.
        var online: [RoomID: [UserID: Int]] = [:]
        /// Each user's connected sockets, whatever rooms they are in: where a user's own events
        /// go (`read-marker`, `mentioned`, `direct-opened`).
        var socketsOfUser: [UserID: Set<SocketRef>] = [:]
    }

    /// An event and who receives it.
    private struct Delivery {
        let event: EncodedEvent
        let recipients: [SocketRef]

        func send(on server: SocketIOServer) {
            ChatMetrics.deliveries.increment(by: recipients.count)
            server.send(event, to: recipients)
        }

        static func send(_ deliveries: [Delivery], on server: SocketIOServer) {
            guard !deliveries.isEmpty else { return }
            ChatMetrics.deliveries.increment(by: deliveries.reduce(0) { $0 + $1.recipients.count })
            server.send(deliveries.map { ($0.event, $0.recipients) })
        }
    }

    /// How many sends to sockets the tailer queues under one acquisition of the Socket.IO
    /// server's lock, at most (about: whole events): fewer acquisitions, none held long.
    static let deliveriesPerLockMax = 1_024

    private let state: Mutex<State>
    /// What waits for commands to be applied, under a lock of its own: every send registers
    /// its ack here, and the tailer holds `state`'s lock for a whole batch's fan-out, but this
    /// one only to settle (after the batch's deliveries are queued, so acks follow events).
    private let commits: Mutex<CommitWaiters>
    /// Each connected socket's gate, under a lock of its own for the same reason: every event
    /// takes it, and the tailer does not. Taken inside `state`'s lock, never the other way.
    private let gates = Mutex<[SocketRef: Gate]>([:])
    /// `state.position`, stored once an apply is complete, its acks included (it only grows).
    private let appliedEnd: Atomic<UInt64>
    let limits: ChatServerLimits
    /// Connection state recovery: events carry their offset (`ChatWire`).
    let recovery: Bool

    init(rooms: RoomState, position: Offset, limits: ChatServerLimits, recovery: Bool) {
        state = Mutex(State(rooms: rooms, position: position))
        commits = Mutex(CommitWaiters(position: position))
        appliedEnd = Atomic(position.value)
        self.limits = limits
        self.recovery = recovery
    }

    // MARK: Queries

    /// Every event below this offset has been applied.
    var position: Offset { Offset(appliedEnd.load(ordering: .acquiring)) }

    /// Why nothing more is applied (the tailer stopped), if it stopped.
    var failure: String? { commits.withLock { $0.failure } }

    /// A room as committed.
    func room(_ id: RoomID) -> RoomState.Room? {
        state.withLock { $0.rooms.room(id) }
    }

    /// A room and who is online in it (sorted), read together.
    func roster(of id: RoomID) -> (room: RoomState.Room, online: [UserID])? {
        state.withLock { state in
            guard let room = state.rooms.room(id) else { return nil }
            return (room, state.online[id].map { Array($0.keys).sorted() } ?? [])
        }
    }

    /// The rooms `include` accepts, sorted by id.
    func rooms(where include: (RoomID, RoomState.Room) -> Bool) -> [(id: RoomID, room: RoomState.Room)] {
        state.withLock { state in
            state.rooms.rooms.filter { include($0.key, $0.value) }.map { (id: $0.key, room: $0.value) }
        }.sorted { $0.id < $1.id }
    }

    /// The committed room state and where it stands (a snapshot's content).
    func snapshot() -> (RoomState, Offset) {
        state.withLock { ($0.rooms, $0.position) }
    }

    // MARK: Waiting for commands to be applied

    /// Waits until the event at `offset` has been applied (committed, in the committed room
    /// state, and fanned out).
    func applied(_ offset: Offset) async -> Result<Void, ChatFailure> {
        await withCheckedContinuation { continuation in
            let now = commits.withLock { $0.wait(for: offset, continuation) }
            if let now { continuation.resume(returning: now) }
        }
    }

    /// Sends `answer` once `offset` is applied (at once if it is).
    func answer(_ answer: PendingAnswer, when offset: Offset, server: SocketIOServer) {
        commits.withLock { $0.answer(answer, when: offset, server: server) }
    }

    /// Answers the commands waiting since before `cutoff` (all of them without one)
    /// `unavailable` with `reason`. Their events may still commit later (they are in the
    /// journal); a client that resends with its `client_id` then gets the original id.
    func failWaiting(_ reason: String, since cutoff: ContinuousClock.Instant? = nil, server: SocketIOServer) {
        let expired = commits.withLock { $0.expire(waitingSince: cutoff, reason: reason, server: server) }
        for waiter in expired { waiter.resume(returning: .failure(.unavailable(reason))) }
    }

    // MARK: Clients

    /// Records a connected socket; false (and nothing recorded) when its user's tokens were
    /// revoked after its token was issued.
    @discardableResult
    func connect(_ socket: SocketRef, user: UserID?, tokenIssuedMs: Int64? = nil) -> Bool {
        state.withLock { state in
            if let user, let issued = tokenIssuedMs, let before = state.rooms.tokensRevokedBefore[user], issued < before {
                return false
            }
            state.clients[socket] = Client(user: user, tokenIssuedMs: tokenIssuedMs)
            if let user { state.socketsOfUser[user, default: []].insert(socket) }
            let gate = Gate(user: user, bucket: TokenBucket(rate: limits.eventsPerSecond, burst: limits.eventsBurst))
            gates.withLock { $0[socket] = gate }
            return true
        }
    }

    /// When `user`'s tokens were revoked before (ms), if they were.
    @Sendable func tokensRevokedBefore(_ user: UserID) -> Int64? {
        state.withLock { $0.rooms.tokensRevokedBefore[user] }
    }

    /// Forgets a socket; its rooms get the presence notices.
    func disconnect(_ socket: SocketRef, server: SocketIOServer) {
        state.withLock { state in
            guard let client = state.clients.removeValue(forKey: socket) else { return }
            _ = gates.withLock { $0.removeValue(forKey: socket) }
            if let user = client.user { Self.forget(socket, of: user, state: &state) }
            for room in client.rooms {
                Self.unsubscribe(socket, user: client.user, from: room, state: &state, recovery: recovery)?.send(on: server)
            }
        }
    }

    /// Runs `body` on the socket's client record (in place: every command takes this path);
    /// nil when the socket is gone.
    @inline(__always)
    func withClient<R>(_ socket: SocketRef, _ body: (inout Client) -> R) -> R? {
        state.withLock { state in
            guard let index = state.clients.index(forKey: socket) else { return nil }
            let before = state.clients.values[index].user
            let result = body(&state.clients.values[index])
            let after = state.clients.values[index].user
            if after != before {
                // A development-mode socket named its user.
                if let before { Self.forget(socket, of: before, state: &state) }
                if let after { state.socketsOfUser[after, default: []].insert(socket) }
                gates.withLock { $0[socket]?.user = after }
            }
            return result
        }
    }

    /// An event of the socket's: whether its rate limit lets it through (a token taken if so),
    /// and the socket's user; nil when the socket is gone.
    func admit(_ socket: SocketRef) -> (allowed: Bool, user: UserID?)? {
        gates.withLock { gates in
            guard let index = gates.index(forKey: socket) else { return nil }
            return (gates.values[index].bucket.take(), gates.values[index].user)
        }
    }

    private static func forget(_ socket: SocketRef, of user: UserID, state: inout State) {
        state.socketsOfUser[user]?.remove(socket)
        if state.socketsOfUser[user]?.isEmpty == true { state.socketsOfUser[user] = nil }
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

    /// Subscribes a socket that has every event of `rooms` below `cursor` (nil: it wants
    /// none of the past, so it is subscribed at the position, whatever the tailer applied
    /// since the caller last looked); the rooms hear who came online.
    func subscribe(_ socket: SocketRef, to rooms: Set<RoomID>, cursor: Offset?, server: SocketIOServer) -> SubscribeOutcome {
        state.withLock { state in
            guard var client = state.clients[socket] else { return .gone }
            let cursor = cursor ?? state.position
            guard cursor >= state.position else { return .behind(state.position) }
            var arrived: [RoomID] = []
            for room in rooms {
                client.replaying.remove(room)
                if client.rooms.insert(room).inserted { arrived.append(room) }
                if cursor > state.position {
                    client.resumeAt[room] = cursor
                    state.resumedAhead.insert(socket)
                }
            }
            state.clients[socket] = client
            for room in arrived {
                state.subscribers[room, default: []].insert(socket)
                guard let user = client.user else { continue }
                let count = state.online[room, default: [:]][user, default: 0]
                state.online[room, default: [:]][user] = count + 1
                guard count == 0, let recipients = state.subscribers[room] else { continue }
                Delivery(event: ChatWire.presence("user-online", room: room, user: user, offset: Self.ephemeralOffset(state.position, recovery)),
                         recipients: Array(recipients)).send(on: server)
            }
            return .subscribed(cursor)
        }
    }

    /// Unsubscribes a socket from a room (it left); the room hears if its user went offline.
    func unsubscribe(_ socket: SocketRef, from room: RoomID, server: SocketIOServer) {
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

    func typing(_ socket: SocketRef, room: RoomID, server: SocketIOServer, now: ContinuousClock.Instant) -> TypingOutcome {
        state.withLock { state in
            guard var client = state.clients[socket], let user = client.user else { return .gone }
            guard client.rooms.contains(room) else { return .notInRoom }
            if let last = client.lastTyping[room], now - last < limits.typingInterval { return .dropped }
            client.lastTyping[room] = now
            state.clients[socket] = client
            for event in ChatWire.typing(user, in: room, offset: Self.ephemeralOffset(state.position, recovery)) {
                server.send(event, to: state.subscribers[room] ?? [])
            }
            return .sent
        }
    }

    /// With connection state recovery, the offset an ephemeral event carries: the last one
    /// applied, so that a client recovering from it misses nothing ("-1" before any).
    private static func ephemeralOffset(_ position: Offset, _ recovery: Bool) -> String? {
        guard recovery else { return nil }
        return position.value == 0 ? "-1" : String(position.value - 1)
    }

    private static func unsubscribe(_ socket: SocketRef, user: UserID?, from room: RoomID, state: inout State,
                                    recovery: Bool) -> Delivery? {
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
        return Delivery(event: ChatWire.presence("user-offline", room: room, user: user, offset: ephemeralOffset(state.position, recovery)),
                        recipients: Array(recipients))
    }

    // MARK: The tailer's side

    /// Applies committed events (in offset order, ending before `end`), sends each to its
    /// room, sends the acks of the sends now applied, and resumes the commands waiting for them.
    func apply(_ events: [(Offset, ChatEvent)], end: Offset, server: SocketIOServer) {
        let revoked = state.withLock { state in
            var deliveries: [Delivery] = []
            var (counted, sends) = (0, 0)  // deliveries counted so far, and their sockets
            var revoked: [SocketRef] = []
            for (offset, event) in events {
                // Queued on the sockets in order, several events at a time (one acquisition of
                // the Socket.IO server's lock each time), under this lock like every change of
                // who receives what, so the order holds. A bound on how long one acquisition
                // holds the server's lock.
                defer {
                    for delivery in deliveries[counted...] { sends += delivery.recipients.count }
                    counted = deliveries.count
                    if sends >= Self.deliveriesPerLockMax {
                        Delivery.send(deliveries, on: server)
                        deliveries.removeAll(keepingCapacity: true)
                        (counted, sends) = (0, 0)
                    }
                }
                state.rooms.apply(event, at: offset.value)
                if case .tokensRevoked(let before) = event.body {
                    // Its connections made with a token issued before end now (on every node).
                    revoked += state.clients.filter { $0.value.user == event.actor && ($0.value.tokenIssuedMs ?? .max) < before }.map(\.key)
                    continue
                }
                if let own = Self.ownDelivery(of: event, at: offset, socketsOfUser: state.socketsOfUser, recovery: recovery) {
                    // An event for its user's sockets only (a read marker), or for both users of
                    // a direct room just opened.
                    if !own.recipients.isEmpty { deliveries.append(own) }
                    if case .readMarked = event.body { continue }
                }
                if var recipients = state.subscribers[event.room], !recipients.isEmpty {
                    if !state.resumedAhead.isEmpty {
                        for socket in state.resumedAhead where offset < state.clients[socket]?.resumeAt[event.room] ?? .zero {
                            recipients.remove(socket)
                        }
                    }
                    deliveries.append(Delivery(event: ChatWire.event(event, at: offset, recovery: recovery), recipients: Array(recipients)))
                    if let companion = ChatWire.companion(of: event, at: offset, recovery: recovery) {
                        deliveries.append(Delivery(event: companion, recipients: deliveries[deliveries.count - 1].recipients))
                    }
                }
                // Every socket of each member the message mentions, in the room or not. (The
                // names first: nearly every message names nobody, and then costs no lookup.)
                if case .messageSent(_, let text, _, _, _) = event.body, case let names = Mentions.names(in: text), !names.isEmpty,
                   let room = state.rooms.room(event.room) {
                    let mentioned = names.filter { $0 != event.actor && room.members.contains($0) }
                    let recipients = mentioned.flatMap { state.socketsOfUser[$0] ?? [] }
                    if !recipients.isEmpty {
                        deliveries.append(Delivery(event: ChatWire.mentioned(event, at: offset, recovery: recovery), recipients: recipients))
                    }
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
                        deliveries.append(Delivery(event: ChatWire.removed(from: event.room, by: event.actor, at: offset, recovery: recovery),
                                                   recipients: Array(theirs)))
                    }
                }
            }
            Delivery.send(deliveries, on: server)
            precondition(end >= state.position, "the tailer went back from \(state.position) to \(end)")
            state.position = end
            for socket in state.resumedAhead {
                let left = state.clients[socket]?.resumeAt.filter { $0.value > end } ?? [:]
                state.clients[socket]?.resumeAt = left
                if left.isEmpty { state.resumedAhead.remove(socket) }
            }
            return revoked
        }
        // The senders' acks go out after the events they sent (queued above); then readers of
        // `position` see the new one (the drain, which disconnects once it is reached, counts
        // on it).
        let (acks, ready) = commits.withLock { $0.settle(below: end) }
        server.ack(acks)
        appliedEnd.store(end.value, ordering: .releasing)
        for waiter in ready { waiter.resume(returning: .success(())) }
        if !revoked.isEmpty {
            Task {
                for socket in revoked { await server.disconnect(socket) }
            }
        }
    }

    /// The delivery of an event that goes to users rather than to its room's subscribers: a
    /// read marker to its user's sockets; a direct room's opening to both users' sockets
    /// (`direct-opened`, which also goes to the room's subscribers as `user-joined`). Nil for
    /// other events.
    private static func ownDelivery(of event: ChatEvent, at offset: Offset, socketsOfUser: [UserID: Set<SocketRef>],
                                    recovery: Bool) -> Delivery? {
        switch event.body {
        case .readMarked:
            return Delivery(event: ChatWire.event(event, at: offset, recovery: recovery),
                            recipients: Array(socketsOfUser[event.actor] ?? []))
        case .directRoomCreated(let peer):
            let recipients = (socketsOfUser[event.actor] ?? []).union(socketsOfUser[peer] ?? [])
            return Delivery(event: ChatWire.directOpened(event, peer: peer, at: offset, recovery: recovery), recipients: Array(recipients))
        default:
            return nil
        }
    }

    /// The tailer stopped: every waiter learns why, and so does every later one.
    func fail(_ reason: String, server: SocketIOServer) {
        let waiting = commits.withLock { $0.fail(reason, server: server) }
        for waiter in waiting { waiter.resume(returning: .failure(.unavailable(reason))) }
    }
}
