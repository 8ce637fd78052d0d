import ChatModel
import Foundation
import Hummingbird
import Journal

/// Revoking a user's tokens (`chatlog token revoke`): a `tokensRevoked` event in the journal,
/// so every node (standbys copy it; a restart replays it or loads it from the snapshot)
/// refuses that user's tokens issued before it, at CONNECT and on the HTTP API, and closes
/// the connections made with them.
enum TokenRevocation {
    /// `POST /api/admin/revoke-tokens` `{"username": NAME}`, with an operator's token
    /// (`Authorization: Bearer`, made from the server's secret): 200
    /// `{username, revoked_before, revoked_before_ms, offset}` once the event is applied here.
    static func handle(_ request: Request, identity: Identity, service: ChatService) async -> Response {
        do {
            try await identity.verifyOperator(token: Identity.bearerToken(request.headers[.authorization]))
        } catch {
            return ChatServer.error(identity.isDevelopment ? .forbidden : .unauthorized,
                                    identity.isDevelopment ? "no_tokens" : "unauthorized", error.message)
        }
        struct Body: Decodable { var username: String }
        guard let bytes = try? await request.body.collect(upTo: bodyBytesMax),
              let body = try? JSONDecoder().decode(Body.self, from: Data(bytes.readableBytesView)) else {
            return ChatServer.error(.badRequest, "invalid_payload", "the body must be JSON {\"username\": NAME}")
        }
        guard let user = UserID(body.username) else {
            return ChatServer.error(.badRequest, "invalid_payload", "username must be 1 to \(UserID.maxBytes) bytes of NFC text without control characters")
        }
        switch await service.revokeTokens(of: user) {
        case .success(let (offset, before)):
            return ChatServer.json(Answer(username: user.value, revokedBefore: Identity.iso(before), revokedBeforeMs: before,
                                          offset: offset.value))
        case .failure(let failure):
            return ChatServer.error(failure.code.httpStatus, failure.code.rawValue, failure.message)
        }
    }

    /// The largest body the route reads.
    static let bodyBytesMax = 4096

    struct Answer: Encodable {
        var username: String
        var revokedBefore: String
        var revokedBeforeMs: Int64
        var offset: UInt64
    }
}

extension ChatService {
    /// Journals that `user`'s tokens issued until now are refused; returns once it is applied
    /// here: its offset and the time before which tokens are refused (ms). On a standby:
    /// `not_leader` (the leader decides every write).
    func revokeTokens(of user: UserID) async -> Result<(Offset, Int64), ChatFailure> {
        switch decider.decide(.revokeTokens, by: user, nowMs: Self.nowMs()) {
        case .appended(let range):
            switch await live.applied(range.last) {
            case .success:
                return .success((range.last, live.tokensRevokedBefore(user) ?? .max))
            case .failure(let failure):
                return .failure(failure)
            }
        case .refused(let failure):
            return .failure(failure)
        case .unavailable(let reason):
            return .failure(.unavailable(reason))
        case .rejected(let rejection):
            return .failure(ChatFailure(rejection))
        case .unchanged, .duplicate:
            return .failure(.unavailable("the revocation was not journaled"))
        }
    }
}
