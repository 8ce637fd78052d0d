import ChatAPI
import ChatModel
import HTTPTypes
import Hummingbird
import Logging
import OpenAPIHummingbird
import OpenAPIRuntime
import SocketIO

/// A refused API request: the failure, and its status (the code's, or for the generated
/// code's own input errors, the one the runtime gives them).
struct APIRefusal: Error, Sendable {
    let failure: ChatFailure
    let status: HTTPResponse.Status

    init(_ failure: ChatFailure, status: HTTPResponse.Status? = nil) {
        self.failure = failure
        self.status = status ?? failure.code.httpStatus
    }

    /// `{"error": {"code", "message"}}`, the shape of every error answer (`ChatServer.error`).
    var response: (HTTPResponse, HTTPBody) {
        var head = HTTPResponse(status: status)
        head.headerFields[.contentType] = "application/json; charset=utf-8"
        if status == .tooManyRequests { head.headerFields[.retryAfter] = "1" }
        let body = JSONValue.object([("error", .object([("code", .string(failure.code.rawValue)),
                                                        ("message", .string(failure.message))]))]).serialized()
        return (head, HTTPBody(body))
    }
}

extension HTTPField.Name {
    /// In development mode, the HTTP API's caller (`APIGuard`).
    static var chatlogUser: HTTPField.Name {
        guard let name = HTTPField.Name("X-Chatlog-User") else { preconditionFailure("X-Chatlog-User is a valid field name") }
        return name
    }
}

/// Around every API operation: who calls (a bearer token, or in `--dev` the `X-Chatlog-User`
/// header), the per-user rate limit, the body limit, and the rendering of every refusal and
/// of the generated code's own input errors as `{error: {code, message}}` with a 4xx status.
struct APIGuard: ServerMiddleware {
    let identity: Identity
    /// The rooms' state, for the tokens revoked.
    let live: LiveRooms
    let limiter: APIRateLimiter
    let bodyBytesMax: Int
    let logger: Logger

    static let devUserHeader = HTTPField.Name.chatlogUser

    func intercept(_ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?))
        async throws -> (HTTPResponse, HTTPBody?) {
        do {
            let user = try await authenticate(request)
            guard limiter.take(for: user) else {
                throw APIRefusal(ChatFailure(.rateLimited, "more than \(Int(limiter.rate)) requests a second; slow down"))
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
            let refusal = Self.refusal(of: error, operationID: operationID, logger: logger)
            ChatMetrics.refused(refusal.failure.code)
            let (head, body) = refusal.response
            return (head, body)
        }
    }

    static func tooLarge(_ limit: Int) -> APIRefusal {
        APIRefusal(ChatFailure(.payloadTooLarge, "request bodies are limited to \(limit) bytes"))
    }

    /// The caller: a token's subject, or in development mode the header's name.
    func authenticate(_ request: HTTPRequest) async throws(ChatFailure) -> UserID {
        var name: String?
        var token: String?
        if identity.isDevelopment {
            name = request.headerFields[Self.devUserHeader]
            guard name != nil else {
                throw ChatFailure.unauthorized("name the caller in the X-Chatlog-User header (development mode)")
            }
        } else {
            guard let authorization = request.headerFields[.authorization] else {
                throw ChatFailure.unauthorized("a token is required: Authorization: Bearer <token>")
            }
            guard let bearer = Identity.bearerToken(authorization) else {
                throw ChatFailure.unauthorized("the Authorization header must be Bearer <token>")
            }
            token = bearer
        }
        let caller: Identity.Caller?
        do {
            caller = try await identity.caller(fromAuth: name, token: token, revokedBefore: live.tokensRevokedBefore)
        } catch {
            throw ChatFailure.unauthorized(error.message)
        }
        guard let caller else { throw ChatFailure.unauthorized("no caller") }
        return caller.user
    }

    /// A thrown error as the client sees it. The generated code wraps what it throws (and what
    /// the handlers throw) in `ServerError`; its input errors (a malformed body, a missing or
    /// mistyped parameter, an unacceptable content type) keep the status the runtime gives them.
    static func refusal(of error: any Error, operationID: String, logger: Logger) -> APIRefusal {
        if let refusal = error as? APIRefusal { return refusal }
        if let failure = error as? ChatFailure { return APIRefusal(failure) }
        guard let serverError = error as? ServerError else {
            logger.error("http api request failed", metadata: ["http.operation": "\(operationID)", "error": "\(error)"])
            return APIRefusal(.unavailable("the request failed: \(error)"))
        }
        if let refusal = serverError.underlyingError as? APIRefusal { return refusal }
        if let failure = serverError.underlyingError as? ChatFailure { return APIRefusal(failure) }
        let status = serverError.httpStatus
        guard status.kind == .clientError else {
            logger.error("http api request failed", metadata: ["http.operation": "\(operationID)", "error": "\(serverError)"])
            return APIRefusal(.unavailable("the request failed: \(serverError.causeDescription)"))
        }
        return APIRefusal(.invalid(mistake(serverError)), status: status)
    }

    /// A client's mistake the generated code caught, in a sentence that names what to change
    /// (not the decoder's dump).
    static func mistake(_ error: ServerError) -> String {
        if let decoding = error.underlyingError as? DecodingError { return describe(decoding) }
        switch error.httpStatus {
        case .unsupportedMediaType: return "send the body as JSON, with Content-Type: application/json"
        case .notAcceptable: return "this API answers application/json: accept it (Accept: application/json or */*)"
        default: return error.causeDescription
        }
    }

    /// What is wrong with a JSON body, by the field's path (`members[2]`).
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined().trimmingPrefix(".").description
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "the body is not valid JSON"
        case .dataCorrupted(let context):
            return "\(path(context.codingPath)) is not valid: \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return "the body lacks \(path(context.codingPath + [key])), which is required"
        case .typeMismatch(let type, let context):
            let what = type == String.self ? "a string" : type == Bool.self ? "true or false"
                : (type == Int.self || type == Int64.self || type == Double.self) ? "a number" : "\(type)"
            guard context.codingPath.isEmpty else { return "\(path(context.codingPath)) must be \(what)" }
            // At no path, the JSON decoder wanted the body's object; a scalar is a query or path
            // parameter (the URI decoder keeps no path).
            return what == "\(type)" ? "the body must be a JSON object"
                : "a query parameter must be \(what) (see the operation in /openapi.yaml)"
        case .valueNotFound(_, let context):
            return "\(path(context.codingPath)) must not be null"
        @unknown default:
            return "the body does not match the operation's schema"
        }
    }
}

extension ChatHTTPAPI {
    /// The API's routes, its document at `/openapi.yaml`, and its guard.
    static func addRoutes(to router: Router<BasicRequestContext>, service: ChatService, identity: Identity,
                          limits: ChatServerLimits, logger: Logger) throws {
        let guardian = APIGuard(identity: identity, live: service.live,
                                limiter: APIRateLimiter(rate: limits.eventsPerSecond, burst: limits.eventsBurst),
                                bodyBytesMax: ChatHTTPAPI.bodyBytesMax, logger: logger)
        try ChatHTTPAPI(service: service).registerHandlers(on: router, middlewares: [guardian])
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
        ("/api/rooms/{group}/messages/{id}/reactions/{emoji}", [.put, .delete]),
        ("/api/rooms/{group}/read-marker", [.put]),
        ("/api/me/rooms", [.get]),
        ("/api/search", [.get]),
        ("/api/direct", [.post]),
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
