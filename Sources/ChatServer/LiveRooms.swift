import ChatModel
import HummingbirdSocketIO
import Journal
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
/// Thread-safe: one `Mutex`, never held across a suspension or I/O.
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
        /// Set when the tailer stopped (the journal failed or closed): waiters get it at once.
        var failure: String?
    }

    struct Waiter {
        let offset: Offset
        let continuation: CheckedContinuation<Result<Void, ChatFailure>, Never>
    }

    /// A Socket.IO packet and who receives it.
    struct Delivery {
        let packet: EnginePacket
        let recipients: [SocketRef]
    }

    let state: Mutex<State>
    let limits: ChatServerLimits

    init(rooms: RoomState, position: Offset, limits: ChatServerLimits) {
        state = Mutex(State(rooms: rooms, position: position))
        self.limits = limits
    }

    var position: Offset { state.withLock { $0.position } }

    // MARK: Waiting for commands to commit

    /// Waits until the event at `offset` has been applied (committed, in the room state and
    /// History, and fanned out).
    func applied(_ offset: Offset) async -> Result<Void, ChatFailure> {
        await withCheckedContinuation { continuation in
            let now: Result<Void, ChatFailure>? = state.withLock { state in
                if offset < state.position { return .success(()) }
                if let failure = state.failure { return .failure(.unavailable(failure)) }
                state.waiters.append(Waiter(offset: offset, continuation: continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    // MARK: Clients

    func connect(_ socket: SocketRef, user: UserID?) {
        state.withLock { state in
            state.clients[socket] = Client(user: user, bucket: TokenBucket(rate: limits.eventsPerSecond, burst: limits.eventsBurst))
        }
    }

    /// Forgets a socket; returns the presence notices its rooms get.
    func disconnect(_ socket: SocketRef) -> [Delivery] {
        state.withLock { state in
            guard let client = state.clients.removeValue(forKey: socket) else { return [] }
            var deliveries: [Delivery] = []
            for room in client.rooms {
                if let delivery = Self.unsubscribe(socket, user: client.user, from: room, state: &state) { deliveries.append(delivery) }
            }
            return deliveries
        }
    }

    /// Runs `body` on the socket's client record; nil when the socket is gone.
    func withClient<R>(_ socket: SocketRef, _ body: (inout Client, borrowing State) -> R) -> R? {
        state.withLock { state in
            guard var client = state.clients[socket] else { return nil }
            let result = body(&client, state)
            state.clients[socket] = client
            return result
        }
    }

    // MARK: Subscriptions

    enum SubscribeOutcome {
        /// Subscribed; presence notices to send.
        case subscribed([Delivery])
        /// Not yet: the room's events from the caller's cursor up to `position` must be
        /// replayed first.
        case behind(Offset)
        /// The socket is gone.
        case gone
    }

    /// Subscribes `socket` to `room` if it has received everything below `position`
    /// (`cursor` is the offset after the last event it has).
    func subscribe(_ socket: SocketRef, to room: RoomID, cursor: Offset) -> SubscribeOutcome {
        state.withLock { state in
            guard var client = state.clients[socket] else { return .gone }
            guard cursor >= state.position else { return .behind(state.position) }
            client.replaying.remove(room)
            guard client.rooms.insert(room).inserted else {
                state.clients[socket] = client
                return .subscribed([])
            }
            state.clients[socket] = client
            state.subscribers[room, default: []].insert(socket)
            guard let user = client.user else { return .subscribed([]) }
            let count = state.online[room, default: [:]][user, default: 0]
            state.online[room, default: [:]][user] = count + 1
            guard count == 0, let recipients = state.subscribers[room] else { return .subscribed([]) }
            return .subscribed([Delivery(packet: Self.presence("user-online", room: room, user: user), recipients: Array(recipients))])
        }
    }

    /// Unsubscribes a socket from a room (it left); returns the presence notice, if any.
    func unsubscribe(_ socket: SocketRef, from room: RoomID) -> [Delivery] {
        state.withLock { state in
            guard var client = state.clients[socket] else { return [] }
            client.replaying.remove(room)
            guard client.rooms.remove(room) != nil else {
                state.clients[socket] = client
                return []
            }
            state.clients[socket] = client
            return Self.unsubscribe(socket, user: client.user, from: room, state: &state).map { [$0] } ?? []
        }
    }

    private static func unsubscribe(_ socket: SocketRef, user: UserID?, from room: RoomID, state: inout State) -> Delivery? {
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
        return Delivery(packet: presence("user-offline", room: room, user: user), recipients: Array(recipients))
    }

    static func presence(_ name: String, room: RoomID, user: UserID) -> EnginePacket {
        .message(SocketPacket.encodeEvent(name, namespace: "/") { output in
            output.beginObject()
            output.key("group"); output.string(room.value)
            output.key("username"); output.string(user.value)
            output.endObject()
        })
    }

    // MARK: The tailer's side

    /// Applies committed events (in offset order, ending before `end`) and returns what to
    /// send and which waiters to resume. `recovery`: events carry their offset.
    func apply(_ events: [(Offset, ChatEvent)], end: Offset, recovery: Bool)
        -> (deliveries: [Delivery], ready: [CheckedContinuation<Result<Void, ChatFailure>, Never>]) {
        state.withLock { state in
            var deliveries: [Delivery] = []
            for (offset, event) in events {
                state.rooms.apply(event, at: offset.value)
                if let recipients = state.subscribers[event.room], !recipients.isEmpty {
                    deliveries.append(Delivery(packet: ChatWire.packet(for: event, at: offset, recovery: recovery),
                                               recipients: Array(recipients)))
                }
                // Who is no longer a member stops receiving the room at once: a removed user's
                // sockets (told so), and a user who left, on all of their sockets.
                let departed: UserID? = switch event.body {
                case .memberRemoved(let user): user
                case .memberLeft: event.actor
                default: nil
                }
                if let departed, let recipients = state.subscribers[event.room] {
                    let theirs = recipients.filter { state.clients[$0]?.user == departed }
                    for socket in theirs {
                        state.clients[socket]?.rooms.remove(event.room)
                        if let notice = Self.unsubscribe(socket, user: departed, from: event.room, state: &state) { deliveries.append(notice) }
                    }
                    if case .memberRemoved = event.body, !theirs.isEmpty {
                        let notice = EnginePacket.message(SocketPacket.encodeEvent("removed-from-group", namespace: "/") { output in
                            output.beginObject()
                            output.key("group"); output.string(event.room.value)
                            output.key("by"); output.string(event.actor.value)
                            output.endObject()
                        })
                        deliveries.append(Delivery(packet: notice, recipients: Array(theirs)))
                    }
                }
            }
            precondition(end >= state.position, "the tailer went back from \(state.position) to \(end)")
            state.position = end
            var ready: [CheckedContinuation<Result<Void, ChatFailure>, Never>] = []
            state.waiters.removeAll { waiter in
                guard waiter.offset < end else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return (deliveries, ready)
        }
    }

    /// The tailer stopped: every waiter learns why, and so does every later one.
    func fail(_ reason: String) -> [CheckedContinuation<Result<Void, ChatFailure>, Never>] {
        state.withLock { state in
            if state.failure == nil { state.failure = reason }
            defer { state.waiters.removeAll() }
            return state.waiters.map(\.continuation)
        }
    }

    var failure: String? { state.withLock { $0.failure } }
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

    /// Takes a token if there is one.
    mutating func take(now: ContinuousClock.Instant = .now) -> Bool {
        let elapsed = now - updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(burst, tokens + seconds * rate)
        updated = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
