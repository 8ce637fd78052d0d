import ChatModel
import HTTPTypes

/// Why a request was not carried out: a code from one fixed set and a message for a person.
///
/// The codes are the strings clients see (in a Socket.IO ack's or `error` event's
/// `error.code`, in the HTTP API's `{error: {code}}`), the HTTP status each maps to, and the
/// label of `chat_commands_refused_total`: all three come from here, so a new code gets its
/// status and its label by being added. docs/protocol.md "Events" lists them.
public struct ChatFailure: Error, Sendable, Equatable {
    public enum Code: Sendable, Hashable, CaseIterable {
        /// A room rule refused it (`Rejection.Code`: `room_not_found`, `not_owner`, ...).
        case rule(Rejection.Code)
        /// A malformed event or request: a missing or mistyped field, an unknown event.
        case invalidPayload
        /// No valid token (or, in development mode, no username).
        case unauthorized
        /// More events or requests a second than the connection's or user's rate allows.
        case rateLimited
        /// A server limit: rooms per user, groups per connection.
        case limitExceeded
        /// An HTTP request body over the API's limit.
        case payloadTooLarge
        /// A resume from an offset the journal no longer retains.
        case outOfRange
        /// A read-only standby, or a fenced former leader: send commands to the leader.
        case notLeader
        /// The server cannot carry it out now (storage failed, stopping, replicas or the
        /// leader not answering); it may be retried.
        case unavailable

        public static var allCases: [Code] {
            Rejection.Code.allCases.map(Code.rule)
                + [.invalidPayload, .unauthorized, .rateLimited, .limitExceeded, .payloadTooLarge, .outOfRange, .notLeader, .unavailable]
        }

        /// The string clients see.
        public var rawValue: String {
            switch self {
            case .rule(let rule): rule.rawValue
            case .invalidPayload: "invalid_payload"
            case .unauthorized: "unauthorized"
            case .rateLimited: "rate_limited"
            case .limitExceeded: "limit_exceeded"
            case .payloadTooLarge: "payload_too_large"
            case .outOfRange: "out_of_range"
            case .notLeader: "not_leader"
            case .unavailable: "unavailable"
            }
        }

        public init?(rawValue: String) {
            guard let code = Self.allCases.first(where: { $0.rawValue == rawValue }) else { return nil }
            self = code
        }

        /// The HTTP API's status for the code.
        public var httpStatus: HTTPResponse.Status {
            switch self {
            case .rule(let rule):
                switch rule {
                case .invalidText, .invalidName, .invalidClientMessageID, .notPrivate, .invalidEmoji: .badRequest
                case .notMember, .notOwner, .notInvited, .notAuthor, .cannotRemoveOwner, .directRoom: .forbidden
                case .roomNotFound, .messageNotFound, .userNotFound: .notFound
                case .roomExists, .alreadyMember, .alreadyInvited, .messageDeleted, .tooManyReactions: .conflict
                }
            case .invalidPayload: .badRequest
            case .unauthorized: .unauthorized
            case .outOfRange: .gone
            case .limitExceeded: .conflict
            case .payloadTooLarge: .contentTooLarge
            case .rateLimited: .tooManyRequests
            case .unavailable, .notLeader: .serviceUnavailable
            }
        }

        /// The `code` label of `chat_commands_refused_total`.
        public var metricLabel: String { rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public init(_ rejection: Rejection) {
        self.init(.rule(rejection.code), rejection.message)
    }

    static func invalid(_ message: String) -> ChatFailure { ChatFailure(.invalidPayload, message) }
    static func unauthorized(_ message: String) -> ChatFailure { ChatFailure(.unauthorized, message) }
    static func unavailable(_ message: String) -> ChatFailure { ChatFailure(.unavailable, message) }

    /// A failure another node reported (a leader's answer to a forwarded command): a code this
    /// build does not know (a newer leader's) is reported as `unavailable`, its message kept.
    init(reportedCode code: String, message: String) {
        self.init(Code(rawValue: code) ?? .unavailable, message)
    }
}
