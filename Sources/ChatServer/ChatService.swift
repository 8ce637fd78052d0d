#if canImport(Glibc)
import Glibc
#endif
import ChatModel
import HummingbirdSocketIO
import Journal
import Logging
import Projections

/// The chat application, behind every door: the one place where a request is carried out as a
/// user and where what users may read is read. The Socket.IO gateway (`ChatGateway`), the
/// HTTP API (`ChatHTTPAPI`) and the route of forwarded commands (`ForwardedCommands`) are
/// adapters around it: they parse, call it, and encode its answer.
///
/// A command is decided here (`Decider`: decide → append), or on a standby forwarded to the
/// leader (`Forwarder`); either way it is answered only once its events are committed and
/// applied here (`LiveRooms.applied`), so whoever sent it reads its own writes from this node
/// next, and with the offset of what it appended (a message's id). Failures are `ChatFailure`s.
///
/// Thread-safe: immutable, over thread-safe parts.
final class ChatService: Sendable {
    let decider: Decider
    let live: LiveRooms
    let journal: Journal
    let history: HistoryProjection
    let historyWriter: ProjectionWriter
    let search: SearchProjection
    let searchWriter: ProjectionWriter
    let limits: ChatServerLimits
    /// On a standby that forwards (not `--read-only`): sends commands to the leader.
    let forwarder: Forwarder?
    let logger: Logger

    init(decider: Decider, live: LiveRooms, journal: Journal, history: HistoryProjection, historyWriter: ProjectionWriter,
         search: SearchProjection, searchWriter: ProjectionWriter, limits: ChatServerLimits, forwarder: Forwarder?, logger: Logger) {
        self.search = search
        self.searchWriter = searchWriter
        self.decider = decider
        self.live = live
        self.journal = journal
        self.history = history
        self.historyWriter = historyWriter
        self.limits = limits
        self.forwarder = forwarder
        self.logger = logger
    }

    /// What a user may ask the chat to do.
    enum Command: Sendable, Equatable {
        /// Joins a room; `createIfMissing` creates a public one first (`join-group`'s way).
        case join(RoomID, createIfMissing: Bool)
        case leave(RoomID)
        /// A message; without a client id, the server makes one up (FORMAT.md §5).
        case send(RoomID, text: String, createdMs: Int64, createdText: String?, clientID: String?, replyTo: MessageID? = nil)
        case create(RoomID, isPrivate: Bool, name: String?)
        case invite(RoomID, UserID)
        case revokeInvite(RoomID, UserID)
        case remove(RoomID, UserID)
        case edit(RoomID, MessageID, text: String)
        case delete(RoomID, MessageID)
        /// Opens the caller's direct room with a user (`Performed.room` names it).
        case openDirect(UserID)
        case react(RoomID, MessageID, emoji: String)
        case unreact(RoomID, MessageID, emoji: String)
        case markRead(RoomID, MessageID)

        /// The room (`RoomID.none` for `openDirect`, whose room the decision finds).
        var room: RoomID {
            switch self {
            case .openDirect:
                .none
            case .join(let room, _), .leave(let room), .send(let room, _, _, _, _, _), .create(let room, _, _), .invite(let room, _),
                 .revokeInvite(let room, _), .remove(let room, _), .edit(let room, _, _), .delete(let room, _),
                 .react(let room, _, _), .unreact(let room, _, _), .markRead(let room, _):
                room
            }
        }
    }

    /// A command carried out.
    struct Performed: Sendable, Equatable {
        /// The offset the answer waits for: the last event the command appended (or, for a
        /// member joining again, the last event decided before it). Nil: nothing to wait for.
        var last: Offset?
        /// A send's message id: its offset, or the original's for a resend.
        var messageID: Offset?
        /// The room an `openDirect` opened.
        var room: RoomID?
    }

    /// How far `start` took a command.
    enum Started: Sendable {
        /// Carried out, or refused, with nothing to wait for.
        case settled(Result<Performed, ChatFailure>)
        /// Decided and appended here: answered once `Performed.last` is applied.
        case appended(Performed)
        /// A standby's: the leader decides it (the command as it is forwarded, with the client
        /// id made up for a send that had none).
        case forward(Command)
    }

    // MARK: Commands

    /// Carries `command` out as `user`: decides it here or forwards it to the leader, and
    /// returns once it is committed and applied here.
    /// - Parameter forwarding: false for a command a standby forwarded here: it is decided
    ///   here or refused `not_leader`, never forwarded on.
    func perform(_ command: Command, as user: UserID, nowMs: Int64 = ChatService.nowMs(), forwarding: Bool = true)
        async -> Result<Performed, ChatFailure> {
        await finish(start(command, as: user, nowMs: nowMs, forwarding: forwarding), as: user)
    }

    /// The part of `perform` that does not wait: the decision (and the append). The Socket.IO
    /// gateway's sends take it alone, and leave their acks to the tailer
    /// (`LiveRooms.answer`): a connection then never suspends per message.
    func start(_ command: Command, as user: UserID, nowMs: Int64, forwarding: Bool = true) -> Started {
        var command = command
        if case .send(let room, let text, let created, let createdText, nil, let replyTo) = command {
            // A made-up id: the server's prefix and 20 random characters (120 bits).
            command = .send(room, text: text, createdMs: created, createdText: createdText,
                            clientID: ClientMessageIDs.generatedPrefix + SocketIOServer.randomID(), replyTo: replyTo)
        }
        let outcome: Decider.Outcome
        switch command {
        case .join(let room, let createIfMissing):
            outcome = decider.join(room, by: user, createIfMissing: createIfMissing, nowMs: nowMs)
        case .leave(let room): outcome = decider.decide(.leave(room), by: user, nowMs: nowMs)
        case .send(let room, let text, let created, let createdText, let clientID, let replyTo):
            outcome = decider.decide(.send(room, clientMessageID: clientID ?? "", text: text, clientCreatedMs: created,
                                           clientCreatedText: createdText, replyTo: replyTo), by: user, nowMs: nowMs)
        case .create(let room, let isPrivate, let name):
            outcome = decider.decide(.createRoom(room, name: name ?? room.value, isPrivate: isPrivate), by: user, nowMs: nowMs)
        case .invite(let room, let invitee): outcome = decider.decide(.invite(room, user: invitee), by: user, nowMs: nowMs)
        case .revokeInvite(let room, let invitee): outcome = decider.decide(.revokeInvitation(room, user: invitee), by: user, nowMs: nowMs)
        case .remove(let room, let member): outcome = decider.decide(.remove(room, user: member), by: user, nowMs: nowMs)
        case .edit(let room, let message, let text): outcome = decider.decide(.edit(room, message: message, text: text), by: user, nowMs: nowMs)
        case .delete(let room, let message): outcome = decider.decide(.delete(room, message: message), by: user, nowMs: nowMs)
        case .openDirect(let peer): outcome = decider.decide(.openDirect(peer: peer), by: user, nowMs: nowMs)
        case .react(let room, let message, let emoji):
            outcome = decider.decide(.react(room, message: message, emoji: emoji), by: user, nowMs: nowMs)
        case .unreact(let room, let message, let emoji):
            outcome = decider.decide(.unreact(room, message: message, emoji: emoji), by: user, nowMs: nowMs)
        case .markRead(let room, let message): outcome = decider.decide(.markRead(room, message: message), by: user, nowMs: nowMs)
        }
        let isSend = if case .send = command { true } else { false }
        // A direct room opened (or found) by this decision, as the decider now has it.
        let opened: RoomID? = if case .openDirect(let peer) = command { decider.directRoom(of: user, and: peer) } else { nil }
        switch outcome {
        case .appended(let range):
            return .appended(Performed(last: range.last, messageID: isSend ? range.first : nil, room: opened))
        case .unchanged:
            // A member joining again, a reaction made already, a marker that stays: what
            // made it so may still be on its way to the disk.
            let next = decider.nextOffset
            return next == .zero ? .settled(.success(Performed(room: opened))) : .appended(Performed(last: Offset(next.value - 1), room: opened))
        case .duplicate(let message):
            // The original may still be on its way to the disk: answer once it is applied.
            return .appended(Performed(last: Offset(message.offset), messageID: Offset(message.offset)))
        case .rejected(let rejection):
            return .settled(.failure(ChatFailure(rejection)))
        case .refused(let failure) where failure.code == .notLeader && forwarding && forwarder != nil:
            return .forward(command)
        case .refused(let failure):
            return .settled(.failure(failure))
        case .unavailable(let reason):
            return .settled(.failure(.unavailable(reason)))
        }
    }

    /// The part of `perform` that waits: for the commit and the apply here, or for the leader
    /// and then for this standby to have copied and applied what the leader appended.
    func finish(_ started: Started, as user: UserID) async -> Result<Performed, ChatFailure> {
        let performed: Performed
        switch started {
        case .settled(let result):
            return result
        case .appended(let decided):
            performed = decided
        case .forward(let command):
            guard let forwarder else { return .failure(.unavailable("no leader to forward to")) }
            switch await forwarder.forward(command, by: user) {
            case .success(let done): performed = done
            case .failure(let failure): return .failure(failure)
            }
        }
        guard let last = performed.last else { return .success(performed) }
        return await live.applied(last).map { performed }
    }

    /// More events are decided and not yet applied than `inFlightEventsMax`: a sender should
    /// wait for its own before it goes on (back-pressure).
    var isBehind: Bool {
        // Read in this order: the position never passes what was appended before it was read.
        let applied = live.position
        return decider.nextOffset.value > applied.value + UInt64(limits.inFlightEventsMax)
    }

    /// Fail-stop (DESIGN.md, invariant 4): storage failed or the journal holds what does not
    /// decode. Nothing more is decided or applied; every waiting and later command is answered
    /// `unavailable`, and `/healthz` says why, until a restart recovers from disk.
    func failStop(_ reason: String, at offset: Offset, server: SocketIOServer) {
        logger.critical("refusing commands until a restart", metadata: ["journal.offset": "\(offset)", "reason": "\(reason)"])
        decider.refuse(reason)
        live.fail(reason, server: server)
    }

    static func nowMs() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
