import ChatAPI
import ChatModel
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import OpenAPIHummingbird
import OpenAPIRuntime
import Projections
import SocketIO
import Synchronization

/// The HTTP API (`/api/rooms…`), for bots, dashboards and integrations: the routes and types
/// are generated from `Sources/ChatAPI/openapi.yaml` (tools/generate-openapi.sh), so the
/// document and the server cannot drift; this type implements the operations.
///
/// Every operation goes the socket events' way, under their rules: reads from the room state
/// and History as the tailer applied them, commands through `ChatGateway.forwarded` (decide,
/// append, wait for the commit; on a standby, forwarded to the leader), so a posted message is
/// broadcast to the room's sockets like any. Who calls comes from `APIGuard`, which also rate-
/// limits and bounds the body; refusals are thrown as `APIFailure` and rendered by it.
/// Thread-safe: immutable, over the gateway's thread-safe parts.
struct ChatHTTPAPI: APIProtocol {
    let gateway: ChatGateway

    /// The caller, as `APIGuard` identified it for this request.
    @TaskLocal static var caller: UserID?

    func caller() throws(APIFailure) -> UserID {
        guard let user = Self.caller else { throw APIFailure(code: "unauthorized", message: "no caller") }
        return user
    }

    // MARK: Rooms

    func listRooms(_ input: Operations.ListRooms.Input) async throws -> Operations.ListRooms.Output {
        let user = try caller()
        // Copied under the lock the tailer applies under; sorted after it.
        let rooms = gateway.live.state.withLock { state in
            state.rooms.rooms.filter { !$0.value.isPrivate || $0.value.members.contains(user) }.map { id, room in
                Components.Schemas.Room(group: id.value, name: room.name, _private: room.isPrivate, owner: room.owner.value,
                                        members: room.members.count, member: room.members.contains(user))
            }
        }
        return .ok(.init(body: .json(.init(rooms: rooms.sorted { $0.group < $1.group }))))
    }

    func createRoom(_ input: Operations.CreateRoom.Input) async throws -> Operations.CreateRoom.Output {
        let user = try caller()
        guard case .json(let body) = input.body else { throw APIFailure.invalid("the body must be JSON") }
        let room = try Self.room(body.group)
        try await perform(.create(room, isPrivate: body._private ?? false, name: body.name), by: user)
        let created = gateway.live.state.withLock { state in state.rooms.room(room) }
        guard let created else { throw APIFailure(code: "unavailable", message: "the room \(room) is not applied yet; retry") }
        return .created(.init(body: .json(.init(group: room.value, name: created.name, _private: created.isPrivate,
                                                owner: created.owner.value, members: created.members.count,
                                                member: created.members.contains(user)))))
    }

    // MARK: Messages

    func listMessages(_ input: Operations.ListMessages.Input) async throws -> Operations.ListMessages.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        let query = input.query
        guard query.before.map({ $0 >= 0 }) ?? true, query.after.map({ $0 >= 0 }) ?? true else {
            throw APIFailure.invalid("before and after are message ids, 0 or more")
        }
        // Read your writes: History holds at least what the tailer had applied by now.
        if case .failure(.unavailable(let reason)) = await gateway.historyWriter.caughtUp(to: gateway.live.position) {
            throw APIFailure(code: "unavailable", message: reason)
        }
        let page = gateway.historyPage(room: room, user: user, before: query.before.map(UInt64.init),
                                       after: query.after.map(UInt64.init), limit: query.limit)
        switch page {
        case .failure(let refused):
            throw APIFailure(code: refused.code, message: refused.message)
        case .success(let messages):
            return .ok(.init(body: .json(.init(group: room.value, messages: messages.map(Self.message)))))
        }
    }

    func postMessage(_ input: Operations.PostMessage.Input) async throws -> Operations.PostMessage.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        guard case .json(let body) = input.body else { throw APIFailure.invalid("the body must be JSON") }
        let created = body.created ?? ChatGateway.nowMs()
        let fields = try await perform(.send(room, text: body.message, created: created, createdText: nil, username: nil,
                                             clientID: body.clientId), by: user)
        guard case .number(let id) = fields.first(where: { $0.0 == "id" })?.1, let offset = Int64(exactly: id) else {
            throw APIFailure(code: "unavailable", message: "the leader did not say which id the message took")
        }
        return .created(.init(body: .json(.init(group: room.value, id: offset, clientId: body.clientId))))
    }

    static func message(_ message: HistoryMessage) -> Components.Schemas.Message {
        Components.Schemas.Message(
            group: message.room, message: message.text, username: message.author,
            created: message.clientCreatedText.map { .case2($0) } ?? .case1(message.clientCreatedMs),
            id: Int64(message.offset),
            clientId: message.clientMessageID.hasPrefix(ChatWire.generatedClientIDPrefix) ? nil : message.clientMessageID,
            edited: message.editedMs == nil ? nil : true, deleted: message.deletedMs == nil ? nil : true)
    }

    // MARK: Members

    func listMembers(_ input: Operations.ListMembers.Input) async throws -> Operations.ListMembers.Output {
        let user = try caller()
        return .ok(.init(body: .json(try members(of: try Self.room(input.path.group), as: user))))
    }

    func joinRoom(_ input: Operations.JoinRoom.Input) async throws -> Operations.JoinRoom.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        // Unlike `join-group`, joining does not create a missing room (POST /api/rooms does).
        guard gateway.live.state.withLock({ $0.rooms.room(room) }) != nil else {
            throw APIFailure(code: "room_not_found", message: "no room \(room)")
        }
        try await perform(.join(room, username: nil, after: nil), by: user)
        return .ok(.init(body: .json(try members(of: room, as: user))))
    }

    func removeMember(_ input: Operations.RemoveMember.Input) async throws -> Operations.RemoveMember.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        let member = try Self.user(input.path.username)
        try await perform(member == user ? .leave(room, username: nil) : .remove(room, member), by: user)
        return .noContent(.init())
    }

    func invite(_ input: Operations.Invite.Input) async throws -> Operations.Invite.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        guard case .json(let body) = input.body else { throw APIFailure.invalid("the body must be JSON") }
        let invitee = try Self.user(body.username)
        try await perform(.invite(room, invitee), by: user)
        return .created(.init(body: .json(.init(group: room.value, username: invitee.value))))
    }

    func members(of room: RoomID, as user: UserID) throws(APIFailure) -> Components.Schemas.Members {
        switch gateway.roster(room: room, user: user) {
        case .failure(let refused):
            throw APIFailure(code: refused.code, message: refused.message)
        case .success(let roster):
            return .init(group: room.value, owner: roster.owner.value, _private: roster.isPrivate,
                         members: roster.members.map(\.value), online: roster.online.map(\.value),
                         invited: roster.invited?.map(\.value))
        }
    }

    // MARK: Commands

    /// Carries a command out as `user`, as a socket's would be (decided, appended, answered
    /// once committed), or on a standby, by its leader. Returns the ack's fields.
    @discardableResult
    func perform(_ request: ChatRequest, by user: UserID) async throws(APIFailure) -> [(String, JSONValue)] {
        var (answer, _) = await gateway.forwarded(request, by: user)
        if case .failed(let code, _) = answer, code == "not_leader", let forwarder = gateway.forwarder {
            let outcome = await forwarder.forward(request, by: user)
            answer = outcome.answer
            // Read your writes on the standby too: answer once it has copied and applied them.
            if case .ok = answer, let offset = outcome.offset,
               case .failure(.unavailable(let reason)) = await gateway.live.applied(offset) {
                answer = .unavailable(reason)
            }
        }
        switch answer {
        case .ok(let fields): return fields
        case .none, .later: return []
        case .failed(let code, let message): throw APIFailure(code: code, message: message)
        }
    }

    static func room(_ value: String) throws(APIFailure) -> RoomID {
        guard let room = RoomID(value) else {
            throw .invalid("group must be 1 to \(RoomID.maxBytes) bytes of UTF-8 in NFC without control characters")
        }
        return room
    }

    static func user(_ value: String) throws(APIFailure) -> UserID {
        guard let user = UserID(value) else {
            throw .invalid("username must be 1 to \(UserID.maxBytes) bytes of UTF-8 in NFC without control characters")
        }
        return user
    }
}

/// A refused API request: its status, and the `{error: {code, message}}` body. The codes are
/// the socket acks' (README "HTTP API" maps each to its status).
struct APIFailure: Error, Sendable {
    let status: HTTPResponse.Status
    let code: String
    let message: String

    init(code: String, message: String) {
        self.init(status: Self.status(of: code), code: code, message: message)
    }

    init(status: HTTPResponse.Status, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func invalid(_ message: String) -> APIFailure { APIFailure(code: "invalid_payload", message: message) }

    static func status(of code: String) -> HTTPResponse.Status {
        switch code {
        case "unauthorized": .unauthorized
        case "not_member", "not_owner", "not_invited", "not_author", "cannot_remove_owner": .forbidden
        case "room_not_found", "message_not_found", "not_found": .notFound
        case "room_exists", "already_member", "already_invited", "message_deleted", "limit_exceeded": .conflict
        case "payload_too_large": .contentTooLarge
        case "rate_limited": .tooManyRequests
        case "unavailable", "not_leader": .serviceUnavailable
        default: .badRequest
        }
    }

    /// `{"error": {"code", "message"}}`, the shape of every error answer (`ChatServer.error`).
    var response: (HTTPResponse, HTTPBody) {
        var head = HTTPResponse(status: status)
        head.headerFields[.contentType] = "application/json; charset=utf-8"
        if status == .tooManyRequests { head.headerFields[.retryAfter] = "1" }
        let body = JSONValue.object([("error", .object([("code", .string(code)), ("message", .string(message))]))]).serialized()
        return (head, HTTPBody(body))
    }
}

/// Around every API operation: who calls (a bearer token, or in `--dev` the `X-Chatlog-User`
/// header), the per-user rate limit, the body limit, and the rendering of every refusal and
/// of the generated code's own input errors as `{error: {code, message}}` with a 4xx status.
struct APIGuard: ServerMiddleware {
    let identity: Identity
    let limiter: APIRateLimiter
    let bodyBytesMax: Int
    let logger: Logger

    static let devUserHeader = HTTPField.Name("X-Chatlog-User")!

    func intercept(_ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?))
        async throws -> (HTTPResponse, HTTPBody?) {
        do {
            let user = try await authenticate(request)
            guard limiter.take(for: user) else {
                throw APIFailure(code: "rate_limited", message: "more than \(Int(limiter.rate)) requests a second; slow down")
            }
            var collected: HTTPBody?
            if let body {
                if case .known(let length) = body.length, length > bodyBytesMax { throw Self.tooLarge(bodyBytesMax) }
                do {
                    collected = HTTPBody(try await [UInt8](collecting: body, upTo: bodyBytesMax))
                } catch {
                    throw Self.tooLarge(bodyBytesMax)
                }
            }
            return try await ChatHTTPAPI.$caller.withValue(user) { try await next(request, collected, metadata) }
        } catch {
            let failure = Self.failure(of: error, operationID: operationID, logger: logger)
            ChatMetrics.refused(failure.code)
            let (head, body) = failure.response
            return (head, body)
        }
    }

    static func tooLarge(_ limit: Int) -> APIFailure {
        APIFailure(code: "payload_too_large", message: "request bodies are limited to \(limit) bytes")
    }

    /// The caller: a token's subject, or in development mode the header's name.
    func authenticate(_ request: HTTPRequest) async throws(APIFailure) -> UserID {
        var name: String?
        var token: String?
        if identity.isDevelopment {
            name = request.headerFields[Self.devUserHeader]
            guard name != nil else {
                throw APIFailure(code: "unauthorized", message: "name the caller in the X-Chatlog-User header (development mode)")
            }
        } else {
            guard let authorization = request.headerFields[.authorization] else {
                throw APIFailure(code: "unauthorized", message: "a token is required: Authorization: Bearer <token>")
            }
            let parts = authorization.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw APIFailure(code: "unauthorized", message: "the Authorization header must be Bearer <token>")
            }
            token = String(parts[1])
        }
        let user: UserID?
        do {
            user = try await identity.user(fromAuth: name, token: token)
        } catch {
            throw APIFailure(code: "unauthorized", message: error.message)
        }
        guard let user else { throw APIFailure(code: "unauthorized", message: "no caller") }
        return user
    }

    /// A thrown error as the client sees it. The generated code wraps what it throws (and what
    /// the handlers throw) in `ServerError`; its input errors (a malformed body, a missing or
    /// mistyped parameter, an unacceptable content type) keep the status the runtime gives them.
    static func failure(of error: any Error, operationID: String, logger: Logger) -> APIFailure {
        if let failure = error as? APIFailure { return failure }
        guard let serverError = error as? ServerError else {
            logger.error("http api request failed", metadata: ["http.operation": "\(operationID)", "error": "\(error)"])
            return APIFailure(code: "unavailable", message: "the request failed: \(error)")
        }
        if let failure = serverError.underlyingError as? APIFailure { return failure }
        let status = serverError.httpStatus
        guard status.kind == .clientError else {
            logger.error("http api request failed", metadata: ["http.operation": "\(operationID)", "error": "\(serverError)"])
            return APIFailure(code: "unavailable", message: "the request failed: \(serverError.causeDescription)")
        }
        return APIFailure(status: status, code: "invalid_payload",
                          message: "\(serverError.causeDescription): \(serverError.underlyingError)")
    }
}

/// The HTTP API's rate limit: a token bucket per user, at the socket events' rate and burst.
/// At most `usersMax` buckets are kept; past that, full ones (users idle for a while) are
/// dropped, and if none is, the map starts over (a burst's worth of leniency, never memory
/// growth). Thread-safe (a mutex).
final class APIRateLimiter: Sendable {
    let rate: Double
    let burst: Double
    static let usersMax = 10_000
    private let buckets = Mutex<[UserID: TokenBucket]>([:])

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// How many users have a bucket.
    var count: Int { buckets.withLock { $0.count } }

    func take(for user: UserID, now: ContinuousClock.Instant = .now) -> Bool {
        buckets.withLock { buckets in
            if buckets[user] == nil, buckets.count >= Self.usersMax {
                buckets = buckets.filter { !$0.value.isFull(now: now) }
                if buckets.count >= Self.usersMax { buckets.removeAll(keepingCapacity: true) }
            }
            return buckets[user, default: TokenBucket(rate: rate, burst: burst, now: now)].take(now: now)
        }
    }
}

extension ChatHTTPAPI {
    /// The API's routes, its document at `/openapi.yaml`, and its guard.
    static func addRoutes(to router: Router<BasicRequestContext>, gateway: ChatGateway, limits: ChatServerLimits,
                          logger: Logger) throws {
        let guardian = APIGuard(identity: gateway.identity,
                                limiter: APIRateLimiter(rate: limits.eventsPerSecond, burst: limits.eventsBurst),
                                bodyBytesMax: ChatHTTPAPI.bodyBytesMax, logger: logger)
        try ChatHTTPAPI(gateway: gateway).registerHandlers(on: router, middlewares: [guardian])
        // Another method on an API path is 405 with the methods it has, not the router's 404.
        router.add(middleware: APIMethodGuard())
        router.get("/openapi.yaml") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.yaml)))
        }
    }

    /// The document's paths and their methods (a unit test holds this to openapi.yaml).
    static let operations: [(path: String, methods: Set<HTTPRequest.Method>)] = [
        ("/api/rooms", [.get, .post]),
        ("/api/rooms/{group}/messages", [.get, .post]),
        ("/api/rooms/{group}/members", [.get, .post]),
        ("/api/rooms/{group}/members/{username}", [.delete]),
        ("/api/rooms/{group}/invitations", [.post]),
    ]

    /// The methods `path` declares, when it is one of the API's paths.
    static func methods(of path: Substring) -> Set<HTTPRequest.Method>? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        return operations.first { operation in
            let template = operation.path.split(separator: "/", omittingEmptySubsequences: false)
            return template.count == segments.count
                && zip(template, segments).allSatisfy { $0.hasPrefix("{") ? !$1.isEmpty : $0 == $1 }
        }?.methods
    }

    /// The largest request body the API reads (a message is at most 4 KB of text).
    static let bodyBytesMax = 64 << 10
}

/// Answers a request to an API path with a method the path does not declare 405 (with
/// `Allow`), where the router would answer 404: any method, `QUERY` and inventions included.
struct APIMethodGuard: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let path = request.uri.path
            guard path.hasPrefix("/api/"), let declared = ChatHTTPAPI.methods(of: Substring(path)), !declared.contains(request.method) else {
                throw error
            }
            let allow = declared.map(\.rawValue).sorted().joined(separator: ", ")
            var response = ChatServer.error(.methodNotAllowed, "invalid_payload", "\(path) answers \(allow) only")
            response.headers[.allow] = allow
            return response
        }
    }
}
