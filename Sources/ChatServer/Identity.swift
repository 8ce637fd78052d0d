import ChatModel
import Foundation
import JWTKit
import Journal
import NIOCore

/// Who a connecting client is.
///
/// With tokens (the default), the CONNECT auth payload carries `{token}`: an HS256 JWT whose
/// `sub` is the username and whose `exp` bounds it, signed with the server's secret. In
/// development mode nothing is checked: the username comes from `{username}` in the auth
/// payload, or from the first `join-group` that names one, as the tutorial binds
/// `socket.username`. Thread-safe (the key collection is an actor; the rest is immutable).
public struct Identity: Sendable {
    public enum Mode: Sendable {
        case development
        case tokens(JWTKeyCollection)
    }

    public let mode: Mode

    public static let development = Identity(mode: .development)

    /// Token mode with the secret in `secret`.
    public static func tokens(secret: [UInt8]) async -> Identity {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return Identity(mode: .tokens(keys))
    }

    public var isDevelopment: Bool {
        if case .development = mode { true } else { false }
    }

    /// How far a token's `nbf` or `iat` may be ahead of this server's clock: clocks of the
    /// issuer and the server disagree a little.
    public static let clockLeeway: TimeInterval = 60

    /// What a token says: the username, when it expires, and (optionally) from when it is
    /// valid and when it was issued.
    public struct TokenPayload: JWTPayload {
        public var sub: SubjectClaim
        public var exp: ExpirationClaim
        public var nbf: NotBeforeClaim?
        public var iat: IssuedAtClaim?
        /// An operator's token (`chatlog token revoke`): it may revoke tokens and may not chat.
        public var adm: Bool?

        public init(username: String, expires: Date, issued: Date? = nil, operator isOperator: Bool = false) {
            sub = SubjectClaim(value: username)
            exp = ExpirationClaim(value: expires)
            iat = issued.map(IssuedAtClaim.init)
            adm = isOperator ? true : nil
        }

        /// - Throws: `JWTError.claimVerificationFailure` for a token that has expired, is not
        ///   valid yet (`nbf`), or says it was issued in the future (`iat`), beyond
        ///   `clockLeeway`.
        public func verify(using algorithm: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
            let ahead = Date().addingTimeInterval(Identity.clockLeeway)
            try nbf?.verifyNotBefore(currentDate: ahead)
            if let iat, iat.value > ahead {
                throw JWTError.claimVerificationFailure(failedClaim: iat, reason: "issued in the future")
            }
        }
    }

    /// Who a request comes from: the user, and when its token was issued (ms; `Int64.min` for
    /// a token without `iat`, nil in development mode, which has no tokens).
    public struct Caller: Sendable, Equatable {
        public var user: UserID
        public var tokenIssuedMs: Int64?
    }

    /// The caller a CONNECT payload (or an API request) identifies: nil in development mode
    /// without a username. A token issued before its user's tokens were revoked
    /// (`revokedBefore`, ms) is refused.
    /// - Throws: `IdentityError` with a message for the client (CONNECT_ERROR).
    public func caller(fromAuth username: String?, token: String?,
                       revokedBefore: (UserID) -> Int64? = { _ in nil }) async throws(IdentityError) -> Caller? {
        switch mode {
        case .development:
            guard let username else { return nil }
            guard let user = UserID(username) else { throw IdentityError(message: "invalid username: 1 to \(UserID.maxBytes) bytes of NFC text without control characters") }
            return Caller(user: user, tokenIssuedMs: nil)
        case .tokens(let keys):
            guard let token, !token.isEmpty else { throw IdentityError(message: "a token is required: connect with auth {token}") }
            let payload = try await verified(token, keys: keys)
            guard payload.adm != true else { throw IdentityError(message: "an operator's token (chatlog token revoke) cannot chat: issue the user a token") }
            guard let user = UserID(payload.sub.value) else { throw IdentityError(message: "the token's subject is not a valid username") }
            let issuedMs = payload.iat.map { Int64(($0.value.timeIntervalSince1970 * 1000).rounded(.down)) } ?? .min
            if let before = revokedBefore(user), issuedMs < before {
                throw IdentityError(message: "the token was revoked (\(user)'s tokens issued before \(Self.iso(before)) are refused): sign in again")
            }
            return Caller(user: user, tokenIssuedMs: issuedMs)
        }
    }

    /// Checks an operator's token (`adm`: true), for the admin routes.
    /// - Throws: `IdentityError` saying why it is not one; in development mode, always.
    public func verifyOperator(token: String?) async throws(IdentityError) {
        guard case .tokens(let keys) = mode else {
            throw IdentityError(message: "a --dev server has no tokens to revoke")
        }
        guard let token, !token.isEmpty else { throw IdentityError(message: "an operator's token is required: Authorization: Bearer <token>") }
        guard try await verified(token, keys: keys).adm == true else {
            throw IdentityError(message: "this is a user's token, not an operator's (chatlog token revoke makes one from the server's secret)")
        }
    }

    private func verified(_ token: String, keys: JWTKeyCollection) async throws(IdentityError) -> TokenPayload {
        do {
            return try await keys.verify(token, as: TokenPayload.self)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            if error.failedClaim is NotBeforeClaim {
                throw IdentityError(message: "the token is not valid yet (nbf)")
            }
            if error.failedClaim is IssuedAtClaim {
                throw IdentityError(message: "the token says it was issued in the future (iat): check the issuer's clock")
            }
            throw IdentityError(message: "the token has expired")
        } catch {
            throw IdentityError(message: "the token is not valid: it is malformed or not signed with this server's secret")
        }
    }

    /// A token for `user`, valid for `ttl` (token mode only).
    public func issue(_ user: UserID, ttl: Duration, now: Date = Date()) async throws -> String {
        guard case .tokens(let keys) = mode else { throw IdentityError(message: "development mode issues no tokens") }
        return try await keys.sign(TokenPayload(username: user.value, expires: now.addingTimeInterval(ttl.inSeconds), issued: now))
    }

    /// An operator's token, valid for `ttl`: it may call the admin routes (revoke tokens), not chat.
    public func issueOperator(ttl: Duration = .seconds(60), now: Date = Date()) async throws -> String {
        guard case .tokens(let keys) = mode else { throw IdentityError(message: "development mode issues no tokens") }
        return try await keys.sign(TokenPayload(username: "chatlog-operator", expires: now.addingTimeInterval(ttl.inSeconds),
                                                issued: now, operator: true))
    }

    /// The token of an `Authorization: Bearer <token>` header value (the scheme in any case);
    /// nil for another shape.
    public static func bearerToken(_ authorization: String?) -> String? {
        guard let parts = authorization?.split(separator: " ", maxSplits: 1), parts.count == 2,
              parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1])
    }

    /// Milliseconds since the epoch as ISO 8601 (UTC, whole seconds).
    public static func iso(_ ms: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }
}

public struct IdentityError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The HS256 secret: read from a file, or generated into it on first start (mode 0600, 32
/// random bytes as 64 hex digits, written with the temp-file/fsync/rename recipe, `AtomicFile`).
public enum AuthSecret {
    public static let bytesMin = 32

    /// Reads the secret; `create` generates it first when the file does not exist.
    /// - Returns: the secret, and whether it was generated now.
    /// - Throws: `ChatServerError.auth` naming the file.
    public static func load(path: String, create: Bool) throws(ChatServerError) -> (secret: [UInt8], generated: Bool) {
        if let existing = try read(path) { return (existing, false) }
        guard create else { throw .auth("no secret file at \(path)") }
        var random = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
        let hex = bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined() + "\n"
        do {
            try AtomicFile.write(ByteBuffer(string: hex), to: path, mode: 0o600)
        } catch {
            throw .auth("cannot write the secret file \(path): \(error)")
        }
        guard let created = try read(path) else { throw .auth("the secret file \(path) vanished after writing it") }
        return (created, true)
    }

    /// The secret in `path` (its text, surrounding whitespace removed), or nil when missing.
    static func read(_ path: String) throws(ChatServerError) -> [UInt8]? {
        let contents: ByteBuffer?
        do {
            contents = try AtomicFile.read(path)
        } catch {
            throw .auth("cannot read the secret file \(path): \(error)")
        }
        guard var contents else { return nil }
        let text = (contents.readString(length: contents.readableBytes) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.utf8.count >= bytesMin else {
            throw .auth("the secret in \(path) is \(text.utf8.count) bytes; at least \(bytesMin) are needed")
        }
        return Array(text.utf8)
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
