/// What a user asks the server to do. `RoomState.decide` turns a command into events or a
/// rejection; commands themselves are never journaled.
public enum ChatCommand: Sendable, Equatable {
    case createRoom(RoomID, name: String, isPrivate: Bool)
    case invite(RoomID, user: UserID)
    case revokeInvitation(RoomID, user: UserID)
    case join(RoomID)
    case leave(RoomID)
    case remove(RoomID, user: UserID)
    case send(RoomID, clientMessageID: String, text: String, clientCreatedMs: Int64, clientCreatedText: String? = nil,
              replyTo: MessageID? = nil)
    case edit(RoomID, message: MessageID, text: String)
    case delete(RoomID, message: MessageID)
    /// Refuse the actor's tokens issued before now (an operator's command, `chatlog token
    /// revoke`).
    case revokeTokens
    /// Open the direct room of the actor and `peer`: create it on first use, join it again
    /// when the actor had left it (`RoomState.directRoom(of:and:)` finds it).
    case openDirect(peer: UserID)
    case react(RoomID, message: MessageID, emoji: String)
    case unreact(RoomID, message: MessageID, emoji: String)
    /// Move the actor's read marker in the room forward to `message`.
    case markRead(RoomID, message: MessageID)

    /// The room the command is about (`RoomID.none` for commands about no room yet or none).
    public var room: RoomID {
        switch self {
        case .revokeTokens, .openDirect:
            .none
        case .createRoom(let room, _, _), .invite(let room, _), .revokeInvitation(let room, _), .join(let room),
             .leave(let room), .remove(let room, _), .send(let room, _, _, _, _, _), .edit(let room, _, _),
             .delete(let room, _), .react(let room, _, _), .unreact(let room, _, _), .markRead(let room, _):
            room
        }
    }
}

/// Why a command was refused: a stable machine-readable `code` and a human `message`.
public struct Rejection: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        case roomExists = "room_exists"
        case roomNotFound = "room_not_found"
        case notOwner = "not_owner"
        case notMember = "not_member"
        case alreadyMember = "already_member"
        case notInvited = "not_invited"
        case alreadyInvited = "already_invited"
        case notPrivate = "not_private"
        case cannotRemoveOwner = "cannot_remove_owner"
        case messageNotFound = "message_not_found"
        case notAuthor = "not_author"
        case messageDeleted = "message_deleted"
        case invalidText = "invalid_text"
        case invalidName = "invalid_name"
        case invalidClientMessageID = "invalid_client_message_id"
        /// A direct room's membership is fixed: no invitations, no removals, no third member.
        case directRoom = "direct_room"
        case userNotFound = "user_not_found"
        case invalidEmoji = "invalid_emoji"
        case tooManyReactions = "too_many_reactions"
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The outcome of `RoomState.decide`.
public enum Decision: Sendable, Equatable {
    /// Append these events (in order).
    case accepted([ChatEvent])
    /// The send repeats a client message id already accepted from this user in this room:
    /// nothing is appended; the original message is `MessageID`.
    case duplicate(of: MessageID)
    case rejected(Rejection)
}

/// Client message ids (a send's idempotency key, FORMAT.md §5 "message sent").
public enum ClientMessageIDs {
    /// The prefix of the ids a server makes up for sends that carry none. Clients may not
    /// send ids with it (they are refused as `invalid_payload`), so a made-up id never
    /// collides with a client's, and it is never echoed to clients as `client_id`.
    public static let generatedPrefix = "chatlog:"

    /// Whether a client may send `id` (it does not claim the server's prefix).
    public static func mayBeSentByClients(_ id: String) -> Bool {
        !id.hasPrefix(generatedPrefix)
    }
}
