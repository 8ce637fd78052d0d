import ChatModel
import Foundation

/// One chat event as a line of JSON: the interchange form of `chatlog journal export` and
/// `import` (docs/protocol.md, "Exporting and importing"). Field names are snake_case; fields a type
/// does not use are absent.
struct EventJSON: Codable, Equatable {
    /// The event's journal offset. Written by export; on import it names the event so that
    /// later `message_edited` / `message_deleted` lines can refer to it.
    var offset: UInt64?
    var timestamp_ms: Int64
    var type: String
    var actor: String
    var room: String
    var name: String?
    var `private`: Bool?
    var user: String?
    var client_message_id: String?
    var text: String?
    var client_created_ms: Int64?
    /// The client's time as the text it sent, when it sent text (an ISO-8601 string).
    var client_created_text: String?
    var message: UInt64?
    /// `tokens_revoked`: the actor's tokens issued before this time (ms) are refused.
    var before_ms: Int64?
    /// `message_sent`: the message it replies to.
    var reply_to: UInt64?
    /// `reaction_added` / `reaction_removed`.
    var emoji: String?

    init(offset: UInt64?, event: ChatEvent) {
        self.offset = offset
        timestamp_ms = event.timestampMs
        actor = event.actor.value
        room = event.room.value
        switch event.body {
        case .roomCreated(let name, let isPrivate):
            type = "room_created"
            self.name = name
            self.private = isPrivate
        case .memberInvited(let user):
            type = "member_invited"
            self.user = user.value
        case .invitationRevoked(let user):
            type = "invitation_revoked"
            self.user = user.value
        case .memberJoined:
            type = "member_joined"
        case .memberLeft:
            type = "member_left"
        case .memberRemoved(let user):
            type = "member_removed"
            self.user = user.value
        case .messageSent(let clientMessageID, let text, let clientCreatedMs, let clientCreatedText, let replyTo):
            type = "message_sent"
            client_message_id = clientMessageID
            self.text = text
            client_created_ms = clientCreatedMs
            client_created_text = clientCreatedText
            reply_to = replyTo?.offset
        case .messageEdited(let message, let text):
            type = "message_edited"
            self.message = message.offset
            self.text = text
        case .messageDeleted(let message):
            type = "message_deleted"
            self.message = message.offset
        case .tokensRevoked(let beforeMs):
            type = "tokens_revoked"
            before_ms = beforeMs
        case .directRoomCreated(let peer):
            type = "direct_room_created"
            user = peer.value
        case .reactionAdded(let message, let emoji):
            type = "reaction_added"
            self.message = message.offset
            self.emoji = emoji
        case .reactionRemoved(let message, let emoji):
            type = "reaction_removed"
            self.message = message.offset
            self.emoji = emoji
        case .readMarked(let message):
            type = "read_marked"
            self.message = message.offset
        }
    }

    /// The command that should produce this event, and who issues it.
    /// - Parameter remap: the target offset of a message referred to by its source offset.
    func command(remap: (UInt64) -> UInt64) throws(ImportLineError) -> (ChatCommand, UserID) {
        func require<T>(_ value: T?, _ field: String) throws(ImportLineError) -> T {
            guard let value else { throw ImportLineError("\(type) needs \"\(field)\"") }
            return value
        }
        guard let actor = UserID(actor) else { throw ImportLineError("invalid actor \(actor.debugDescription)") }
        // About no room; decided at its timestamp, it revokes what it revoked.
        if type == "tokens_revoked" { return (.revokeTokens, actor) }

        guard let room = RoomID(room) else { throw ImportLineError("invalid room \(room.debugDescription)") }
        func user() throws(ImportLineError) -> UserID {
            let value = try require(self.user, "user")
            guard let user = UserID(value) else { throw ImportLineError("invalid user \(value.debugDescription)") }
            return user
        }
        // Its room is the one the decider picks (`dm:` and the two names, unless taken).
        if type == "direct_room_created" { return (.openDirect(peer: try user()), actor) }
        let command: ChatCommand
        switch type {
        case "room_created": command = .createRoom(room, name: try require(name, "name"), isPrivate: try require(self.private, "private"))
        case "member_invited": command = .invite(room, user: try user())
        case "invitation_revoked": command = .revokeInvitation(room, user: try user())
        case "member_joined": command = .join(room)
        case "member_left": command = .leave(room)
        case "member_removed": command = .remove(room, user: try user())
        case "message_sent":
            command = .send(room, clientMessageID: try require(client_message_id, "client_message_id"), text: try require(text, "text"),
                            clientCreatedMs: client_created_ms ?? timestamp_ms, clientCreatedText: client_created_text,
                            replyTo: reply_to.map { MessageID(remap($0)) })
        case "message_edited": command = .edit(room, message: MessageID(remap(try require(message, "message"))), text: try require(text, "text"))
        case "message_deleted": command = .delete(room, message: MessageID(remap(try require(message, "message"))))
        case "reaction_added":
            command = .react(room, message: MessageID(remap(try require(message, "message"))), emoji: try require(emoji, "emoji"))
        case "reaction_removed":
            command = .unreact(room, message: MessageID(remap(try require(message, "message"))), emoji: try require(emoji, "emoji"))
        case "read_marked": command = .markRead(room, message: MessageID(remap(try require(message, "message"))))
        default: throw ImportLineError("unknown type \(type.debugDescription)")
        }
        return (command, actor)
    }
}

struct ImportLineError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
