import ChatModel
import HummingbirdSocketIO
import Journal
import Logging
import SocketIO
import Synchronization

/// Step 1 of a command's path (**socket event → command** → decide → append → commit → tail
/// → broadcast): the Socket.IO adapter of the `ChatService`. It identifies clients at
/// CONNECT, parses each event (`ChatRequest`), has the service carry it out or read it, and
/// answers: an ack when the client asked for one, an `error` event for a refusal otherwise.
/// What only sockets have is here: a connection's user and rate limit, its subscriptions to
/// rooms (with the replay that precedes them, `Replay`), typing, and the sends' fast path,
/// whose acks the tailer sends (`LiveRooms.answer`).
///
/// Handlers run in the task of the connection concerned (see `SocketIOHandler`), so a
/// command that waits for its commit holds back only its own connection's later events.
/// Thread-safe: its state is `LiveRooms`' and a small lock of pending identities.
final class ChatGateway: SocketIOHandler {
    let service: ChatService
    let live: LiveRooms
    let journal: Journal
    let identity: Identity
    let limits: ChatServerLimits
    let recovery: Bool
    let logger: Logger
    /// Users identified at CONNECT (and where a recovering one resumes), until `connected`
    /// files them with the socket.
    private let identified = Mutex<[String: Identified]>([:])

    struct Identified {
        var user: UserID?
        /// When its token was issued (ms), to close the connection if its tokens are revoked.
        var tokenIssuedMs: Int64?
        /// Connection state recovery: replay the user's rooms from this offset.
        var recoverFrom: Offset?
        var at = ContinuousClock.now
    }

    /// Identities filed and not yet taken past which stale ones (a session that ended between
    /// CONNECT and `connected`) are dropped, and how old they are then.
    static let identitiesFiledMax = 1_024
    static let identityFiledAgeMax: Duration = .seconds(60)

    init(service: ChatService, identity: Identity, recovery: Bool, logger: Logger) {
        self.service = service
        live = service.live
        journal = service.journal
        limits = service.limits
        self.identity = identity
        self.recovery = recovery
        self.logger = logger
    }

    /// Files an identity until `connected` takes it.
    private func file(_ identity: Identified, for request: ConnectRequest) {
        identified.withLock { map in
            if map.count >= Self.identitiesFiledMax {
                let cutoff = ContinuousClock.now - Self.identityFiledAgeMax
                map = map.filter { $0.value.at > cutoff }
            }
            map[request.engineID + request.namespace] = identity
        }
    }

    // MARK: Connections

    func authorize(_ request: ConnectRequest) async -> ConnectDecision {
        let auth = request.auth ?? .null
        let caller: Identity.Caller?
        do {
            caller = try await identity.caller(fromAuth: auth["username"]?.stringValue, token: auth["token"]?.stringValue,
                                               revokedBefore: live.tokensRevokedBefore)
        } catch {
            logger.info("connection refused", metadata: ["socketio.sid": "\(request.engineID)", "reason": "\(error.message)"])
            return .refuse(message: error.message, data: .object([("code", .string(ChatFailure.Code.unauthorized.rawValue))]))
        }
        let user = caller?.user
        let issued = caller?.tokenIssuedMs
        guard recovery else {
            file(Identified(user: user, tokenIssuedMs: issued), for: request)
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
        file(Identified(user: user, tokenIssuedMs: issued, recoverFrom: recoverFrom), for: request)
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
        guard live.connect(socket, user: identified.user, tokenIssuedMs: identified.tokenIssuedMs) else {
            // Its tokens were revoked since CONNECT was accepted.
            await server.disconnect(socket)
            return
        }
        guard let start = identified.recoverFrom, let user = identified.user else { return }
        await recover(socket, user: user, from: start, server: server)
    }

    /// Connection state recovery: replays what the socket missed in its rooms.
    private func recover(_ socket: SocketRef, user: UserID, from start: Offset, server: SocketIOServer) async {
        let rooms = service.memberships(of: user)
        let replay = Replay(service: service, server: server, recovery: recovery)
        let outcome = await replay.run(socket, rooms: rooms, user: user, from: start)
        if case .failure(let failure) = outcome {
            logger.info("connection state recovery failed", metadata: ["socketio.sid": "\(socket.engineID)", "reason": "\(failure.message)"])
            ChatWire.refuse(socket, event: "recovery", ackID: nil, failure, server: server)
        }
    }

    func disconnected(_ socket: SocketRef, reason: SocketSession.DisconnectReason, server: SocketIOServer) async {
        live.disconnect(socket, server: server)
    }

    // MARK: Events

    /// How an event ends, for its ack (or `error` event).
    enum Answer {
        case ok([(String, JSONValue)])
        case failed(ChatFailure)
        /// Nothing to answer (an ephemeral signal dropped by its rate limit).
        case none
        /// The tailer answers once the send is applied (`LiveRooms.answer`).
        case later

        init(_ command: ChatService.Command, _ result: Result<ChatService.Performed, ChatFailure>) {
            switch result {
            case .success(let performed): self = .ok(ChatWire.ackFields(of: command, performed))
            case .failure(let failure): self = .failed(failure)
            }
        }
    }

    /// What `start` leaves to do.
    enum Step {
        case done(Answer)
        /// A send that was forwarded, or decided while too many events wait to be applied
        /// (back-pressure on this connection): answered once the service finishes it.
        case finish(ChatService.Started, ChatService.Command, UserID)
        /// An event that waits (a command for its commit, a join for its replay, a history
        /// read for History): `wait` carries it out.
        case wait(ChatRequest, nowMs: Int64)
    }

    /// An event: answered at once when it can be (sends, typing, reads of the committed state,
    /// refusals), else once what it waits for is done (a command's commit, a join's replay,
    /// History catching up). The connection's later events wait for it: its receiver runs in a
    /// task started for each burst of frames, which ends (with the memory a wait needed) when
    /// they are done (`WebSocketConnection.startReceiving`).
    func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async {
        let answer: Answer
        switch start(socket, name: name, arguments: arguments, ackID: ackID, server: server) {
        case .done(let now):
            answer = now
        case .finish(let started, let command, let user):
            answer = await Answer(command, service.finish(started, as: user))
        case .wait(let request, let nowMs):
            answer = await wait(socket, request, server: server, nowMs: nowMs)
        }
        respond(answer, to: socket, event: name, ackID: ackID, server: server)
    }

    func respond(_ answer: Answer, to socket: SocketRef, event name: String, ackID: UInt64?, server: SocketIOServer) {
        switch answer {
        case .none, .later:
            break
        case .ok(let fields):
            if let ackID { server.ack(socket, id: ackID, [ChatWire.success(fields)]) }
        case .failed(let failure):
            ChatWire.refuse(socket, event: name, ackID: ackID, failure, server: server)
        }
    }

    /// The synchronous part of an event: the rate limit, the payload, and every event that
    /// needs no waiting.
    func start(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) -> Step {
        // The rate limit and the socket's user, from the socket's gate (a lock the tailer never takes).
        guard let (allowed, bound) = live.admit(socket) else {
            return .done(.none)
        }
        guard allowed else {
            return .done(.failed(ChatFailure(.rateLimited, "more than \(Int(limits.eventsPerSecond)) events a second; slow down")))
        }
        let request: ChatRequest
        do {
            request = try ChatRequest.parse(name, arguments: arguments)
        } catch {
            return .done(.failed(.invalid(error.message)))
        }
        let nowMs = ChatService.nowMs()
        switch request {
        case .perform(let command, let username):
            guard case .send = command else { return .wait(request, nowMs: nowMs) }
            return send(socket, command, username: username, bound: bound, ackID: ackID, server: server, nowMs: nowMs)
        case .typing(let room, let username):
            return .done(typing(socket, room: room, username: username, server: server))
        case .members(let room):
            return .done(members(socket, room: room))
        case .join, .leave, .history, .myGroups, .search:
            return .wait(request, nowMs: nowMs)
        }
    }

    /// The events that wait: commands for their commit, joins for their replay, history reads
    /// for History to catch up.
    func wait(_ socket: SocketRef, _ request: ChatRequest, server: SocketIOServer, nowMs: Int64) async -> Answer {
        switch request {
        case .join(let room, let username, let after):
            return await join(socket, room: room, username: username, after: after, server: server, nowMs: nowMs)
        case .leave(let room, let username):
            let answer = await perform(socket, .leave(room), username: username, nowMs: nowMs)
            // The socket stops receiving the room even when it was not a member (a public room's reader).
            live.unsubscribe(socket, from: room, server: server)
            return answer
        case .perform(let command, let username):
            return await perform(socket, command, username: username, nowMs: nowMs)
        case .history(let room, let before, let after, let limit):
            let user = live.withClient(socket) { client in client.user } ?? nil
            switch await service.history(of: room, as: user, before: before, after: after, limit: limit) {
            case .success(let page): return .ok([("group", .string(room.value)), ("messages", .array(page.map(ChatWire.historyEntry)))])
            case .failure(let failure): return .failed(failure)
            }
        case .myGroups:
            return await myGroups(socket)
        case .search(let query, let group, let before, let limit):
            guard case .success(let user) = user(of: socket, naming: nil) else {
                return .failed(.unauthorized("no username: connect with auth {username}, or name one in join-group"))
            }
            switch await service.search(query, as: user, in: group, before: before, limit: limit) {
            case .success(let found): return .ok([("messages", .array(found.map(ChatWire.historyEntry)))])
            case .failure(let failure): return .failed(failure)
            }
        case .typing, .members:
            preconditionFailure("\(request) is answered by start")
        }
    }

    /// The socket's user. In development mode a username in the payload binds it when none is
    /// bound yet; outside it, payload usernames are ignored (the token says who speaks).
    func user(of socket: SocketRef, naming username: String?) -> Result<UserID, ChatFailure> {
        let outcome: Result<UserID, ChatFailure>? = live.withClient(socket) { client in
            if let bound = client.user { return speaker(bound, naming: username) }
            guard identity.isDevelopment, let username else {
                return .failure(.unauthorized("no username: connect with auth {username}, or name one in join-group"))
            }
            guard let user = UserID(username) else {
                return .failure(.unauthorized("username must be 1 to \(UserID.maxBytes) bytes of NFC text without control characters"))
            }
            client.user = user
            return .success(user)
        }
        return outcome ?? .failure(.unauthorized("the socket is disconnected"))
    }

    /// A socket bound to `bound` speaks for it; in development mode a payload naming another
    /// user is refused (outside it, payload usernames are ignored).
    func speaker(_ bound: UserID, naming username: String?) -> Result<UserID, ChatFailure> {
        if identity.isDevelopment, let username, username != bound.value {
            return .failure(.unauthorized("this connection speaks for \(bound), not \(username)"))
        }
        return .success(bound)
    }

    /// Carries out a command as the socket's user and answers with its ack's fields.
    func perform(_ socket: SocketRef, _ command: ChatService.Command, username: String?, nowMs: Int64) async -> Answer {
        switch user(of: socket, naming: username) {
        case .success(let user): return await Answer(command, service.perform(command, as: user, nowMs: nowMs))
        case .failure(let failure): return .failed(failure)
        }
    }

    /// A send, the hot path: once appended, its ack is left to the tailer (`LiveRooms.answer`),
    /// so the connection goes on reading without a suspension per message; while more than
    /// `inFlightEventsMax` events wait to be applied, it waits like any command (back-pressure).
    /// - Parameter bound: the socket's user as `start` read it: taken as is when the payload
    ///   names no other (the socket's user never changes once bound).
    func send(_ socket: SocketRef, _ command: ChatService.Command, username: String?, bound: UserID?, ackID: UInt64?,
              server: SocketIOServer, nowMs: Int64) -> Step {
        let user: UserID
        switch bound.map({ speaker($0, naming: username) }) ?? self.user(of: socket, naming: username) {
        case .success(let speaking): user = speaking
        case .failure(let failure): return .done(.failed(failure))
        }
        let started = service.start(command, as: user, nowMs: nowMs)
        if case .settled(let result) = started { return .done(Answer(command, result)) }
        guard case .appended(let performed) = started, let last = performed.last, !service.isBehind else {
            return .finish(started, command, user)
        }
        let answer = PendingAnswer(socket: socket, ackID: ackID, event: "send-group-message", messageID: performed.messageID)
        live.answer(answer, when: last, server: server)
        return .done(.later)
    }

    func join(_ socket: SocketRef, room: RoomID, username: String?, after: UInt64?, server: SocketIOServer, nowMs: Int64) async -> Answer {
        let user: UserID
        switch self.user(of: socket, naming: username) {
        case .success(let bound): user = bound
        case .failure(let failure): return .failed(failure)
        }
        let admitted: Bool? = live.withClient(socket) { client in
            guard !client.rooms.contains(room), !client.replaying.contains(room) else { return true }
            guard client.rooms.count + client.replaying.count < limits.groupsPerConnectionMax else { return false }
            client.replaying.insert(room)
            return true
        }
        guard let admitted else { return .failed(.unavailable("the socket is disconnected")) }
        guard admitted else {
            return .failed(ChatFailure(.limitExceeded, "a connection may be in at most \(limits.groupsPerConnectionMax) groups"))
        }
        // Member first (on a standby, by the leader, and then copied and applied here); the
        // replay starts from there.
        if case .failure(let failure) = await service.perform(.join(room, createIfMissing: true), as: user, nowMs: nowMs) {
            live.unsubscribe(socket, from: room, server: server)
            return .failed(failure)
        }
        let replay = Replay(service: service, server: server, recovery: recovery)
        switch await replay.run(socket, rooms: [room], user: user, from: after.map { Offset($0 + 1) }) {
        case .success(let position):
            let (members, online) = service.presence(in: room)
            return .ok([
                ("group", .string(room.value)),
                ("members", .array(members.map { .string($0.value) })),
                ("online", .array(online.map { .string($0.value) })),
                ("last_id", position.value == 0 ? .null : .number(Double(position.value - 1))),
            ])
        case .failure(let failure):
            live.unsubscribe(socket, from: room, server: server)
            return .failed(failure)
        }
    }

    func typing(_ socket: SocketRef, room: RoomID, username: String?, server: SocketIOServer) -> Answer {
        if case .failure(let failure) = user(of: socket, naming: username) { return .failed(failure) }
        switch live.typing(socket, room: room, server: server, now: .now) {
        case .sent, .dropped: return .none  // rate-limited signals are dropped quietly
        case .notInRoom: return .failed(ChatFailure(.rule(.notMember), "join \(room) before signalling typing in it"))
        case .gone: return .failed(.unavailable("the socket is disconnected"))
        }
    }

    func members(_ socket: SocketRef, room: RoomID) -> Answer {
        // nil: an anonymous development-mode reader.
        let user = live.withClient(socket) { client in client.user } ?? nil
        switch service.roster(of: room, as: user) {
        case .failure(let failure): return .failed(failure)
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

    func myGroups(_ socket: SocketRef) async -> Answer {
        guard case .success(let user) = user(of: socket, naming: nil) else {
            return .failed(.unauthorized("no username: connect with auth {username}, or name one in join-group"))
        }
        switch await service.inbox(of: user) {
        case .failure(let failure):
            return .failed(failure)
        case .success(let rooms):
            return .ok([("groups", .array(rooms.map(ChatWire.groupEntry)))])
        }
    }
}
