import ChatModel
import Journal
import NIOCore
import Synchronization

/// Steps 2 and 3 of a command's path (`ChatGateway` → **decide → append** → `Tailer`): the one
/// place where commands are decided, in one order, and their events appended.
///
/// It decides against its own room state, which already holds every event it has appended,
/// committed or not: two conflicting commands (two creations of one room, a removal racing a
/// send, two sends with one client id) are decided one after the other, and the second sees
/// the first. Appending is `Journal.submit`, which fixes the events' offsets at once and in
/// the order of calls, so deciding and appending happen under one lock and the state knows
/// each event's offset (a message's id) before it is written. Nothing here waits for the
/// disk: many commands are appended while one group is written, and share its fsync.
///
/// Nothing it decides is visible before it commits: the caller waits for the `Tailer` to
/// apply the offset it returns (`LiveRooms.applied`), and only then answers. If the journal
/// fails, the state here (which may hold events that will never commit) is dropped for good:
/// every later command is refused as `unavailable` until a restart recovers from disk.
///
/// Thread-safe: one `Mutex`, held to decide, encode and submit (no I/O, no suspension); the
/// next offset is also kept in an atomic, so that a sender's back-pressure check
/// (`ChatService.isBehind`) reads it without contending for the lock.
public final class Decider: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// The events took these offsets; answer once they are applied.
        case appended(OffsetRange)
        /// Nothing to append (a member joining again).
        case unchanged
        /// A send repeating a client message id: the original message.
        case duplicate(MessageID)
        case rejected(Rejection)
        /// A server limit (`limit_exceeded`), or the server's role (a standby: `not_leader`),
        /// refused it.
        case refused(ChatFailure)
        /// The journal does not accept appends (it failed, or the server is stopping).
        case unavailable(String)
    }

    struct State: ~Copyable {
        var rooms: RoomState
        /// The offset the next appended event takes.
        var next: Offset
        /// Set once the journal failed or the server stops accepting commands.
        var refusal: String?
        /// Set on a standby: the leader that takes commands.
        var leader: String?
        /// Rooms each user owns, for `roomsCreatedPerUserMax`.
        var ownedRooms: [UserID: Int]
    }

    let journal: Journal
    let limits: ChatServerLimits
    private let state: Mutex<State>
    /// `state.next`, stored under the lock whenever it moves (it only grows).
    private let next: Atomic<UInt64>

    /// - Parameters:
    ///   - roomState: the committed state at `next` (nothing may be pending: the server
    ///     opened the journal and caught the projection up).
    ///   - next: where `roomState` stands: the journal's end, or past it on a standby seeded
    ///     from its leader's room state.
    public init(journal: Journal, roomState: RoomState, next: Offset? = nil, limits: ChatServerLimits) {
        precondition(journal.nextOffset == journal.committedOffset, "the decider starts on a journal with nothing pending")
        precondition((next ?? journal.nextOffset) >= journal.nextOffset, "the decider's state is at or past the journal's end")
        self.journal = journal
        self.limits = limits
        var owned: [UserID: Int] = [:]
        for room in roomState.rooms.values { owned[room.owner, default: 0] += 1 }
        let start = next ?? journal.nextOffset
        state = Mutex(State(rooms: roomState, next: start, refusal: nil, leader: nil, ownedRooms: owned))
        self.next = Atomic(start.value)
    }

    /// Decides `command` by `user` and appends its events.
    public func decide(_ command: ChatCommand, by user: UserID, nowMs: Int64) -> Outcome {
        state.withLock { state in
            if let refusal = state.refusal { return .unavailable(refusal) }
            if case .createRoom = command, state.ownedRooms[user, default: 0] >= limits.roomsCreatedPerUserMax {
                return .refused(tooManyRooms(user))
            }
            if case .openDirect(let peer) = command, state.rooms.directRoom(of: user, and: peer) == nil,
               state.ownedRooms[user, default: 0] >= limits.roomsCreatedPerUserMax {
                return .refused(tooManyRooms(user))
            }
            switch state.rooms.decide(command, by: user, at: nowMs) {
            case .rejected(let rejection): return .rejected(rejection)
            case .duplicate(let message): return .duplicate(message)
            case .accepted(let events) where events.isEmpty: return .unchanged
            case .accepted(let events): return append(events, state: &state)
            }
        }
    }

    /// The direct room of two users, as decided so far.
    public func directRoom(of one: UserID, and other: UserID) -> RoomID? {
        state.withLock { $0.rooms.directRoom(of: one, and: other) }
    }

    /// A `join-group`: joins the room, or creates it (public, named after its id) when it does
    /// not exist and `createIfMissing`; appends nothing for a member. One decision, so a room
    /// created by two first joiners at once is created once and joined by the second.
    public func join(_ room: RoomID, by user: UserID, createIfMissing: Bool, nowMs: Int64) -> Outcome {
        state.withLock { state in
            if let refusal = state.refusal { return .unavailable(refusal) }
            guard let existing = state.rooms.room(room) else {
                guard createIfMissing else { return .rejected(Rejection(.roomNotFound, "no room \(room)")) }
                guard state.ownedRooms[user, default: 0] < limits.roomsCreatedPerUserMax else {
                    return .refused(tooManyRooms(user))
                }
                switch state.rooms.decide(.createRoom(room, name: room.value, isPrivate: false), by: user, at: nowMs) {
                case .accepted(let events): return append(events, state: &state)
                case .rejected(let rejection): return .rejected(rejection)
                case .duplicate: preconditionFailure("creating a room is never a duplicate")
                }
            }
            if existing.members.contains(user) { return .unchanged }
            switch state.rooms.decide(.join(room), by: user, at: nowMs) {
            case .accepted(let events): return append(events, state: &state)
            case .rejected(let rejection): return .rejected(rejection)
            case .duplicate: preconditionFailure("joining is never a duplicate")
            }
        }
    }

    private func append(_ events: [ChatEvent], state: inout State) -> Outcome {
        if let leader = state.leader { return Self.notLeader(leader) }
        var records: [ByteBuffer] = []
        records.reserveCapacity(events.count)
        for event in events { records.append(ChatEventCodec.encode(event)) }
        let range: OffsetRange
        do {
            range = try journal.submit(records)
        } catch {
            state.refusal = "the journal does not accept appends: \(error)"
            return .unavailable(state.refusal ?? "")
        }
        precondition(range.first == state.next, "the decider expected offset \(state.next), the journal gave \(range.first): another writer?")
        var offset = range.first
        for event in events {
            state.rooms.apply(event, at: offset.value)
            if event.createsRoom { state.ownedRooms[event.actor, default: 0] += 1 }
            offset = offset.advanced(by: 1)
        }
        state.next = offset
        next.store(offset.value, ordering: .releasing)
        return .appended(range)
    }

    /// Refuses every command from now on (the journal failed, or the server is stopping).
    public func refuse(_ reason: String) {
        state.withLock { state in
            if state.refusal == nil { state.refusal = reason }
        }
    }

    // MARK: On a standby

    /// Makes this a standby's decider: every command that would append is refused with
    /// `not_leader`, naming `leader`. What needs no append (a member joining again) is still
    /// answered, against the state `follow` keeps current.
    public func followLeader(_ leader: String) {
        state.withLock { $0.leader = leader }
    }

    /// A standby's decider becomes a leader's (promotion): it takes commands again. Its state
    /// must hold everything the journal holds (the tailer has applied it all).
    public func lead() {
        state.withLock { state in
            precondition(state.next == journal.nextOffset, "promoted with \(state.next) decided and \(journal.nextOffset) in the journal")
            state.leader = nil
        }
    }

    static func notLeader(_ leader: String) -> Outcome {
        .refused(ChatFailure(.notLeader, "this server is a read-only standby of \(leader): send commands to the leader"))
    }

    private func tooManyRooms(_ user: UserID) -> ChatFailure {
        ChatFailure(.limitExceeded, "\(user) already owns \(limits.roomsCreatedPerUserMax) rooms, the most one user may create")
    }

    /// A standby's decider applies what its tailer applies from the replicated journal, so its
    /// state is the committed one (and ready if the standby is promoted).
    func follow(_ events: [(Offset, ChatEvent)], end: Offset) {
        state.withLock { state in
            for (offset, event) in events where offset >= state.next {
                state.rooms.apply(event, at: offset.value)
                if event.createsRoom { state.ownedRooms[event.actor, default: 0] += 1 }
            }
            state.next = max(state.next, end)
            next.store(state.next.value, ordering: .releasing)
        }
    }

    /// The offset the next appended event takes: everything below it has been submitted.
    public var nextOffset: Offset { Offset(next.load(ordering: .acquiring)) }
}
