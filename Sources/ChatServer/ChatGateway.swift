#if canImport(Glibc)
import Glibc
#endif
import ChatModel
import HummingbirdSocketIO
import Journal
import Logging
import Projections
import SocketIO
import Synchronization

/// Step 1 of a command's path (**socket event → command** → decide → append → commit → tail
/// → broadcast): the Socket.IO handler. It identifies clients at CONNECT, turns each event
/// into a command for the `Decider` (or a read of the committed state), waits for the
/// `Tailer` to apply what was appended, and answers: an ack when the client asked for one,
/// an `error` event for a refusal otherwise.
///
/// Handlers run in the task of the connection concerned (see `SocketIOHandler`), so a
/// command that waits for its commit holds back only its own connection's later events.
/// Thread-safe: its state is the `LiveRooms`' lock and a small lock of pending identities.
final class ChatGateway: SocketIOHandler {
    let decider: Decider
    let live: LiveRooms
    let journal: Journal
    let history: HistoryProjection
    let historyWriter: HistoryWriter
    let identity: Identity
    let limits: ChatServerLimits
    let recovery: Bool
    let logger: Logger
    /// On a standby that forwards (not `--read-only`): sends commands to the leader.
    let forwarder: Forwarder?
    /// Users identified at CONNECT (and where a recovering one resumes), until `connected`
    /// files them with the socket.
    private let identified = Mutex<[String: Identified]>([:])

    struct Identified {
        var user: UserID?
        /// Connection state recovery: replay the user's rooms from this offset.
        var recoverFrom: Offset?
        var at = ContinuousClock.now
    }

    /// Files an identity until `connected` takes it. A session that ends between the two
    /// leaves its entry behind: entries older than a minute are dropped once there are many.
    private func file(_ identity: Identified, for request: ConnectRequest) {
        identified.withLock { map in
            if map.count >= 1_024 {
                let cutoff = ContinuousClock.now - .seconds(60)
                map = map.filter { $0.value.at > cutoff }
            }
            map[request.engineID + request.namespace] = identity
        }
    }

    init(decider: Decider, live: LiveRooms, journal: Journal, history: HistoryProjection, historyWriter: HistoryWriter,
         identity: Identity, limits: ChatServerLimits, recovery: Bool, forwarder: Forwarder? = nil, logger: Logger) {
        self.decider = decider
        self.live = live
        self.journal = journal
        self.history = history
        self.historyWriter = historyWriter
        self.identity = identity
        self.limits = limits
        self.recovery = recovery
        self.forwarder = forwarder
        self.logger = logger
    }

    // MARK: Connections

    func authorize(_ request: ConnectRequest) async -> ConnectDecision {
        let auth = request.auth ?? .null
        let user: UserID?
        do {
            user = try await identity.user(fromAuth: auth["username"]?.stringValue, token: auth["token"]?.stringValue)
        } catch {
            logger.info("connection refused", metadata: ["socketio.sid": "\(request.engineID)", "reason": "\(error.message)"])
            return .refuse(message: error.message, data: .object([("code", .string("unauthorized"))]))
        }
        guard recovery else {
            file(Identified(user: user), for: request)
            return .accept(pid: nil)
        }
        // Recovery needs to know whose rooms to give back (the user's memberships, which
        // survive restarts) and an offset still retained; otherwise a new pid tells the
        // client it was not recovered, and it joins its rooms again.
        var recoverFrom: Offset?
        if let presented = request.recovery, user != nil, let start = Self.recoveryStart(presented.offset),
           start >= journal.earliestOffset, start <= live.position {
            recoverFrom = start
        }
        file(Identified(user: user, recoverFrom: recoverFrom), for: request)
        if let presented = request.recovery, recoverFrom != nil { return .accept(pid: presented.pid) }
        return .accept(pid: SocketIOServer.randomID())
    }

    /// The offset to resume from, given the last offset a client received ("-1": none yet).
    static func recoveryStart(_ offset: String) -> Offset? {
        if offset == "-1" { return .zero }
        guard let last = UInt64(offset), last < UInt64.max else { return nil }
        return Offset(last + 1)
    }

    func connected(_ socket: SocketRef, server: SocketIOServer) async {
        let identified = identified.withLock { $0.removeValue(forKey: socket.engineID + socket.namespace) } ?? Identified()
        live.connect(socket, user: identified.user)
        guard let start = identified.recoverFrom, let user = identified.user else { return }
        let rooms = live.state.withLock { state in
            Set(state.rooms.rooms.filter { $0.value.members.contains(user) }.keys)
        }
        let replay = Replay(journal: journal, live: live, server: server, limits: limits, recovery: recovery)
        // In a child task, as every wait is (see `event`).
        let outcome = await withTaskGroup(of: Replay.Outcome.self) { group in
            group.addTask { await replay.run(socket, rooms: rooms, user: user, from: start) }
            return await group.next() ?? .failed(code: "unavailable", message: "the recovery was cancelled")
        }
        if case .failed(let code, let message) = outcome {
            logger.info("connection state recovery failed", metadata: ["socketio.sid": "\(socket.engineID)", "reason": "\(message)"])
            ChatWire.refuse(socket, event: "recovery", ackID: nil, code: code, message: message, server: server)
        }
    }

    func disconnected(_ socket: SocketRef, reason: SocketSession.DisconnectReason, server: SocketIOServer) async {
        live.disconnect(socket, recovery: recovery, server: server)
    }

    // MARK: Events

    /// How an event ends, for its ack (or `error` event).
    enum Answer {
        case ok([(String, JSONValue)])
        case failed(code: String, message: String)
        /// Nothing to answer (an ephemeral signal dropped by its rate limit).
        case none
        /// The tailer answers once the command's events are applied (`LiveRooms.answer`).
        case later

        static func rejected(_ rejection: Rejection) -> Answer { .failed(code: rejection.code.rawValue, message: rejection.message) }
        static func unauthorized(_ message: String) -> Answer { .failed(code: "unauthorized", message: message) }
        static func invalid(_ message: String) -> Answer { .failed(code: "invalid_payload", message: message) }
        static func unavailable(_ message: String) -> Answer { .failed(code: "unavailable", message: message) }
    }

    /// An event: answered at once when it can be (sends, typing, reads of the committed state,
    /// refusals), else by a child task that waits for its commit.
    ///
    /// The connection's task runs this for every event it reads, for as long as the connection
    /// lives, and a task keeps the memory its deepest call chain needed until it ends: so what
    /// waits (a command's commit, a join's replay, History catching up) runs in a child task
    /// whose memory goes when it ends, and the connection's own path stays shallow.
    func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async {
        let answer: Answer
        switch start(socket, name: name, arguments: arguments, ackID: ackID, server: server) {
        case .done(let now):
            answer = now
        case .waitApplied(let offset, let fields):
            // A send over the in-flight bound: back-pressure on this connection.
            switch await live.applied(offset) {
            case .success: answer = .ok(fields)
            case .failure(.unavailable(let reason)): answer = .unavailable(reason)
            }
        case .wait(let request, let nowMs):
            answer = await withTaskGroup(of: Answer.self) { group in
                group.addTask { await self.finish(socket, request, server: server, nowMs: nowMs) }
                return await group.next() ?? .unavailable("the command was cancelled")
            }
        case .forward(let request, let user):
            answer = await withTaskGroup(of: Answer.self) { group in
                group.addTask { await self.forwarder?.forward(request, by: user).answer ?? .unavailable("no leader to forward to") }
                return await group.next() ?? .unavailable("the command was cancelled")
            }
        }
        respond(answer, to: socket, event: name, ackID: ackID, server: server)
    }

    func respond(_ answer: Answer, to socket: SocketRef, event name: String, ackID: UInt64?, server: SocketIOServer) {
        switch answer {
        case .none, .later:
            break
        case .ok(let fields):
            if let ackID { server.ack(socket, id: ackID, [ChatWire.success(fields)]) }
        case .failed(let code, let message):
            ChatWire.refuse(socket, event: name, ackID: ackID, code: code, message: message, server: server)
        }
    }

    /// What `start` leaves to do.
    enum Step {
        case done(Answer)
        /// Wait until `offset` is applied, then answer with these fields.
        case waitApplied(Offset, [(String, JSONValue)])
        /// A command that waits for its commit (or a join's replay, or History): `finish` it.
        case wait(ChatRequest, nowMs: Int64)
        /// On a standby: the leader decides it (`Forwarder`).
        case forward(ChatRequest, UserID)
    }

    /// The synchronous part of an event: the rate limit, the payload, and every event that
    /// needs no waiting.
    func start(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) -> Step {
        guard let allowed = live.withClient(socket, { client in client.bucket.take() }) else { return .done(.none) }
        guard allowed else {
            return .done(.failed(code: "rate_limited", message: "more than \(Int(limits.eventsPerSecond)) events a second; slow down"))
        }
        let request: ChatRequest
        do {
            request = try ChatRequest.parse(name, arguments: arguments)
        } catch {
            return .done(.invalid(error.message))
        }
        let nowMs = Self.nowMs()
        switch request {
        case .send(let room, let text, let created, let createdText, let username, let clientID):
            return send(socket, room: room, text: text, created: created, createdText: createdText, username: username,
                        clientID: clientID, ackID: ackID, server: server, nowMs: nowMs)
        case .typing(let room, let username):
            return .done(typing(socket, room: room, username: username, server: server))
        case .members(let room):
            return .done(members(socket, room: room))
        case .myGroups:
            return .done(myGroups(socket))
        case .join, .leave, .create, .invite, .revokeInvite, .remove, .edit, .delete, .history:
            return .wait(request, nowMs: nowMs)
        }
    }

    /// The events that wait: commands for their commit, joins for their replay, history reads
    /// for History to catch up.
    func finish(_ socket: SocketRef, _ request: ChatRequest, server: SocketIOServer, nowMs: Int64) async -> Answer {
        switch request {
        case .join(let room, let username, let after):
            return await join(socket, room: room, username: username, after: after, server: server, nowMs: nowMs)
        case .leave(let room, let username):
            return await leave(socket, room: room, username: username, server: server, nowMs: nowMs)
        case .create, .invite, .revokeInvite, .remove, .edit, .delete:
            guard let (command, fields) = Self.roomCommand(request) else { preconditionFailure("\(request) is a room command") }
            return await self.command(socket, command, nowMs: nowMs, forwarding: request, fields: fields)
        case .history(let room, let before, let after, let limit):
            // Read your writes: History holds at least what the tailer had applied by now.
            if case .failure(.unavailable(let reason)) = await historyWriter.caughtUp(to: live.position) {
                return .unavailable(reason)
            }
            return readHistory(socket, room: room, before: before, after: after, limit: limit)
        case .send, .typing, .members, .myGroups:
            preconditionFailure("\(request) is answered by start")
        }
    }

    /// The command of a request that changes a room (not a send, join or leave), and the ack
    /// fields it answers with.
    static func roomCommand(_ request: ChatRequest) -> (ChatCommand, (OffsetRange?) -> [(String, JSONValue)])? {
        switch request {
        case .create(let room, let isPrivate, let displayName):
            return (.createRoom(room, name: displayName ?? room.value, isPrivate: isPrivate), { _ in [("group", .string(room.value))] })
        case .invite(let room, let user): return (.invite(room, user: user), { _ in [] })
        case .revokeInvite(let room, let user): return (.revokeInvitation(room, user: user), { _ in [] })
        case .remove(let room, let user): return (.remove(room, user: user), { _ in [] })
        case .edit(let room, let message, let text): return (.edit(room, message: message, text: text), { _ in [] })
        case .delete(let room, let message): return (.delete(room, message: message), { _ in [] })
        case .join, .leave, .send, .typing, .members, .myGroups, .history: return nil
        }
    }

    /// The socket's user. In development mode a username in the payload binds it when none is
    /// bound yet; outside it, payload usernames are ignored (the token says who speaks).
    func user(of socket: SocketRef, naming username: String?) -> Result<UserID, PayloadError> {
        let outcome: Result<UserID, PayloadError>? = live.withClient(socket) { client in
            if let bound = client.user {
                if identity.isDevelopment, let username, username != bound.value {
                    return .failure(PayloadError("this connection speaks for \(bound), not \(username)"))
                }
                return .success(bound)
            }
            guard identity.isDevelopment, let username else {
                return .failure(PayloadError("no username: connect with auth {username}, or name one in join-group"))
            }
            guard let user = UserID(username) else {
                return .failure(PayloadError("username must be 1 to \(UserID.maxBytes) bytes of NFC text without control characters"))
            }
            client.user = user
            return .success(user)
        }
        return outcome ?? .failure(PayloadError("the socket is disconnected"))
    }

    /// Decides, appends, waits for the commit, and answers with `fields` of the range; on a
    /// standby, forwards the event to the leader instead (`forward`).
    func command(_ socket: SocketRef, _ command: ChatCommand, username: String? = nil, nowMs: Int64,
                 forwarding request: ChatRequest? = nil,
                 fields: (OffsetRange?) -> [(String, JSONValue)]) async -> Answer {
        let user: UserID
        switch self.user(of: socket, naming: username) {
        case .success(let bound): user = bound
        case .failure(let error): return .unauthorized(error.message)
        }
        let answer = await decideAndWait(command, by: user, nowMs: nowMs, fields: fields)
        if let request, let forwarder, case .failed(let code, _) = answer, code == "not_leader" {
            return await forwarder.forward(request, by: user).answer
        }
        return answer
    }

    /// The socket-free part of `command`: also how a leader carries out a command its standby
    /// forwarded (`forwarded`).
    func decideAndWait(_ command: ChatCommand, by user: UserID, nowMs: Int64,
                       fields: (OffsetRange?) -> [(String, JSONValue)]) async -> Answer {
        switch decider.decide(command, by: user, nowMs: nowMs) {
        case .appended(let range):
            switch await live.applied(range.last) {
            case .success: return .ok(fields(range))
            case .failure(.unavailable(let reason)): return .unavailable(reason)
            }
        case .unchanged:
            return .ok(fields(nil))
        case .duplicate(let message):
            // The original may still be on its way to the disk: answer once it is committed.
            switch await live.applied(Offset(message.offset)) {
            case .success: return .ok(fields(OffsetRange(first: Offset(message.offset), last: Offset(message.offset))))
            case .failure(.unavailable(let reason)): return .unavailable(reason)
            }
        case .rejected(let rejection):
            return .rejected(rejection)
        case .refused(let code, let message):
            return .failed(code: code, message: message)
        case .unavailable(let reason):
            return .unavailable(reason)
        }
    }

    /// A send, the hot path: once appended, its ack is left to the tailer (`LiveRooms.answer`),
    /// so the connection goes on reading without a suspension per message; while more than
    /// `inFlightEventsMax` events wait to be applied, it waits like any command (back-pressure).
    func send(_ socket: SocketRef, room: RoomID, text: String, created: Int64, createdText: String?, username: String?,
              clientID: String?, ackID: UInt64?, server: SocketIOServer, nowMs: Int64) -> Step {
        let user: UserID
        switch self.user(of: socket, naming: username) {
        case .success(let bound): user = bound
        case .failure(let error): return .done(.unauthorized(error.message))
        }
        let clientMessageID = clientID ?? ChatWire.generatedClientIDPrefix + SocketIOServer.randomID()
        let command = ChatCommand.send(room, clientMessageID: clientMessageID, text: text, clientCreatedMs: created,
                                       clientCreatedText: createdText)
        let id: Offset
        switch decider.decide(command, by: user, nowMs: nowMs) {
        case .appended(let range): id = range.first
        case .duplicate(let message): id = Offset(message.offset)
        case .rejected(let rejection): return .done(.rejected(rejection))
        case .refused(let code, _) where code == "not_leader" && forwarder != nil:
            return .forward(.send(room, text: text, created: created, createdText: createdText, username: nil, clientID: clientMessageID), user)
        case .refused(let code, let message): return .done(.failed(code: code, message: message))
        case .unavailable(let reason): return .done(.unavailable(reason))
        case .unchanged: preconditionFailure("a send always appends or is a duplicate")
        }
        let answer = LiveRooms.PendingAnswer(socket: socket, ackID: ackID, event: "send-group-message",
                                             fields: [("id", .number(Double(id.value)))])
        // Read in this order: the position never passes what was appended before it was read.
        let applied = live.position
        if decider.nextOffset.value > applied.value + UInt64(limits.inFlightEventsMax) {
            return .waitApplied(id, answer.fields)
        }
        live.answer(answer, when: id, server: server)
        return .done(.later)
    }

    func join(_ socket: SocketRef, room: RoomID, username: String?, after: UInt64?, server: SocketIOServer, nowMs: Int64) async -> Answer {
        let user: UserID
        switch self.user(of: socket, naming: username) {
        case .success(let bound): user = bound
        case .failure(let error): return .unauthorized(error.message)
        }
        let admitted: Bool? = live.withClient(socket) { client in
            guard !client.rooms.contains(room), !client.replaying.contains(room) else { return true }
            guard client.rooms.count + client.replaying.count < limits.groupsPerConnectionMax else { return false }
            client.replaying.insert(room)
            return true
        }
        guard let admitted else { return .unavailable("the socket is disconnected") }
        guard admitted else {
            return .failed(code: "limit_exceeded", message: "a connection may be in at most \(limits.groupsPerConnectionMax) groups")
        }
        var settled: Result<Void, ChatFailure>
        switch decider.join(room, by: user, createIfMissing: true, nowMs: nowMs) {
        case .appended(let range):
            settled = await live.applied(range.last)
        case .unchanged:
            // A member: what made it one may still be on its way to the disk.
            let next = decider.nextOffset
            settled = next.value == 0 ? .success(()) : await live.applied(Offset(next.value - 1))
        case .rejected(let rejection):
            live.unsubscribe(socket, from: room, recovery: recovery, server: server)
            return .rejected(rejection)
        case .refused(let code, _) where code == "not_leader" && forwarder != nil:
            // The leader makes the user a member; the replay below starts once this standby
            // has copied and applied that.
            let forwarded = await forwarder?.forward(.join(room, username: nil, after: nil), by: user)
            guard case .ok = forwarded?.answer, let offset = forwarded?.offset else {
                live.unsubscribe(socket, from: room, recovery: recovery, server: server)
                return forwarded?.answer ?? .unavailable("no leader to forward to")
            }
            settled = await live.applied(offset)
        case .refused(let code, let message):
            live.unsubscribe(socket, from: room, recovery: recovery, server: server)
            return .failed(code: code, message: message)
        case .duplicate:
            preconditionFailure("joining is never a duplicate")
        case .unavailable(let reason):
            settled = .failure(.unavailable(reason))
        }
        if case .failure(.unavailable(let reason)) = settled {
            live.unsubscribe(socket, from: room, recovery: recovery, server: server)
            return .unavailable(reason)
        }
        let replay = Replay(journal: journal, live: live, server: server, limits: limits, recovery: recovery)
        switch await replay.run(socket, rooms: [room], user: user, from: after.map { Offset($0 + 1) }) {
        case .subscribed(let position):
            let roster = live.state.withLock { state -> ([String], [String])? in
                guard let info = state.rooms.room(room) else { return nil }
                let online = state.online[room].map { Array($0.keys.map(\.value)).sorted() } ?? []
                return (info.members.map(\.value).sorted(), online)
            }
            return .ok([
                ("group", .string(room.value)),
                ("members", .array((roster?.0 ?? []).map(JSONValue.string))),
                ("online", .array((roster?.1 ?? []).map(JSONValue.string))),
                ("last_id", position.value == 0 ? .null : .number(Double(position.value - 1))),
            ])
        case .failed(let code, let message):
            live.unsubscribe(socket, from: room, recovery: recovery, server: server)
            return .failed(code: code, message: message)
        }
    }

    func leave(_ socket: SocketRef, room: RoomID, username: String?, server: SocketIOServer, nowMs: Int64) async -> Answer {
        let answer = await command(socket, .leave(room), username: username, nowMs: nowMs,
                                   forwarding: .leave(room, username: nil)) { _ in [("group", .string(room.value))] }
        // The socket stops receiving the room even when it was not a member (a public room's reader).
        live.unsubscribe(socket, from: room, recovery: recovery, server: server)
        return answer
    }

    func typing(_ socket: SocketRef, room: RoomID, username: String?, server: SocketIOServer) -> Answer {
        if case .failure(let error) = user(of: socket, naming: username) { return .unauthorized(error.message) }
        switch live.typing(socket, room: room, recovery: recovery, server: server, now: .now) {
        case .sent, .dropped: return .none  // rate-limited signals are dropped quietly
        case .notInRoom: return .failed(code: "not_member", message: "join \(room) before signalling typing in it")
        case .gone: return .unavailable("the socket is disconnected")
        }
    }

    func members(_ socket: SocketRef, room: RoomID) -> Answer {
        // nil: an anonymous development-mode reader.
        let user = live.withClient(socket) { client in client.user } ?? nil
        switch roster(room: room, user: user) {
        case .failure(let refused): return .failed(code: refused.code, message: refused.message)
        case .success(let roster):
            var fields: [(String, JSONValue)] = [
                ("group", .string(room.value)),
                ("owner", .string(roster.owner.value)),
                ("private", .bool(roster.isPrivate)),
                ("members", .array(roster.members.map { .string($0.value) })),
                ("online", .array(roster.online.map { .string($0.value) })),
            ]
            if let invited = roster.invited { fields.append(("invited", .array(invited.map { .string($0.value) }))) }
            return .ok(fields)
        }
    }

    /// A refused read: the code and message of the ack (and of the HTTP API's error).
    struct Refused: Error {
        let code: String
        let message: String
    }

    /// Who is in a room, as `user` may see it: members and who is online; pending invitations
    /// for a private room's owner only. Private rooms: members only. Also the
    /// HTTP API's `GET /api/rooms/{group}/members`.
    struct Roster {
        var owner: UserID
        var isPrivate: Bool
        var members: [UserID]
        var online: [UserID]
        var invited: [UserID]?
    }

    func roster(room: RoomID, user: UserID?) -> Result<Roster, Refused> {
        live.state.withLock { state in
            guard let info = state.rooms.room(room) else { return .failure(Refused(code: "room_not_found", message: "no room \(room)")) }
            guard user.map(info.mayRead) ?? !info.isPrivate else {
                return .failure(Refused(code: "not_member", message: "only members may list the members of the private room \(room)"))
            }
            let online = state.online[room].map { Array($0.keys).sorted() } ?? []
            return .success(Roster(owner: info.owner, isPrivate: info.isPrivate, members: info.members.sorted(), online: online,
                                   invited: info.isPrivate && info.owner == user ? info.invited.sorted() : nil))
        }
    }

    func myGroups(_ socket: SocketRef) -> Answer {
        guard case .success(let user) = user(of: socket, naming: nil) else {
            return .unauthorized("no username: connect with auth {username}, or name one in join-group")
        }
        return live.state.withLock { state -> Answer in
            let groups = state.rooms.rooms.filter { $0.value.members.contains(user) }.sorted { $0.key < $1.key }.map { id, room in
                JSONValue.object([
                    ("group", .string(id.value)), ("name", .string(room.name)), ("private", .bool(room.isPrivate)),
                    ("owner", .string(room.owner.value)), ("members", .number(Double(room.members.count))),
                ])
            }
            return .ok([("groups", .array(groups))])
        }
    }

    func readHistory(_ socket: SocketRef, room: RoomID, before: UInt64?, after: UInt64?, limit: Int?) -> Answer {
        let user = live.withClient(socket) { client in client.user } ?? nil
        switch historyPage(room: room, user: user, before: before, after: after, limit: limit) {
        case .success(let page): return .ok([("group", .string(room.value)), ("messages", .array(page.map(ChatWire.historyEntry)))])
        case .failure(let refused): return .failed(code: refused.code, message: refused.message)
        }
    }

    /// The messages of a `history` page, after the access and paging checks. Also the HTTP
    /// API's `GET /api/rooms/{group}/messages`.
    func historyPage(room: RoomID, user: UserID?, before: UInt64?, after: UInt64?, limit: Int?) -> Result<[HistoryMessage], Refused> {
        let access: Refused? = live.state.withLock { state in
            guard let info = state.rooms.room(room) else { return Refused(code: "room_not_found", message: "no room \(room)") }
            guard user.map(info.mayRead) ?? !info.isPrivate else {
                return Refused(code: "not_member", message: "only members may read the history of the private room \(room)")
            }
            return nil
        }
        if let access { return .failure(access) }
        let size = limit ?? limits.historyPageDefault
        let sizeMax = min(limits.historyPageMax, HistoryProjection.pageLimitMax)
        guard (1...sizeMax).contains(size) else {
            return .failure(Refused(code: "invalid_payload", message: "limit must be 1 to \(sizeMax)"))
        }
        do {
            return .success(try history.page(room: room.value, before: before, after: after, limit: size))
        } catch {
            logger.error("history read failed", metadata: ["room.id": "\(room)", "error": "\(error)"])
            return .failure(Refused(code: "unavailable", message: "history is unavailable: \(error)"))
        }
    }

    static func nowMs() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

