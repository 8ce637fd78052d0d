import ChatModel
import HummingbirdSocketIO
import Journal
import Projections
import SocketIO

/// What Socket.IO clients receive, every shape in one place: each journal event as the event
/// a room's sockets get, in the tutorial's shapes (`send-group-message` {group, message,
/// username, created, id}, `user-joined` / `user-left` with the username as a string); the
/// ephemeral events (presence, typing) and notices; the acks and the `error` event.
///
/// Pure functions; the docs/protocol.md documents every shape with an example.
enum ChatWire {
    /// Client message ids the server makes up for sends that carry none: never echoed.
    static let generatedClientIDPrefix = ClientMessageIDs.generatedPrefix

    /// An event as its room receives it, encoded once for all recipients. `recovery` appends
    /// the offset (a string) as the last argument, as Socket.IO's connection state recovery
    /// expects.
    static func event(_ event: ChatEvent, at offset: Offset, recovery: Bool) -> EncodedEvent {
        let (name, write) = arguments(for: event, at: offset)
        return EncodedEvent(name) { output in
            write(&output)
            if recovery { output.string(String(offset.value)) }
        }
    }

    /// The event with its room that goes with a tutorial notice carrying only a username:
    /// `member-joined` / `member-left` {group, username} after `user-joined` / `user-left`, so
    /// that a client showing several rooms can place it. Nil for other events.
    static func companion(of event: ChatEvent, at offset: Offset, recovery: Bool) -> EncodedEvent? {
        let name: String
        switch event.body {
        case .roomCreated, .memberJoined, .directRoomCreated: name = "member-joined"
        case .memberLeft: name = "member-left"
        default: return nil
        }
        return EncodedEvent(name) { output in
            roomNotice(&output, room: event.room, user: event.actor)
            if recovery { output.string(String(offset.value)) }
        }
    }

    /// `{group, username}`.
    private static func roomNotice(_ output: inout JSONOutput, room: RoomID, user: UserID) {
        output.beginObject()
        output.key("group"); output.string(room.value)
        output.key("username"); output.string(user.value)
        output.endObject()
    }

    /// `user-online` / `user-offline` {group, username}; `offset`: see `LiveRooms.ephemeralOffset`.
    static func presence(_ name: String, room: RoomID, user: UserID, offset: String?) -> EncodedEvent {
        EncodedEvent(name) { output in
            roomNotice(&output, room: room, user: user)
            if let offset { output.string(offset) }
        }
    }

    /// `user-typing`, the username as a string (the tutorial's shape), and `typing` {group,
    /// username}, which says in which room.
    static func typing(_ user: UserID, in room: RoomID, offset: String?) -> [EncodedEvent] {
        [EncodedEvent("user-typing") { output in
            output.string(user.value)
            if let offset { output.string(offset) }
        }, EncodedEvent("typing") { output in
            roomNotice(&output, room: room, user: user)
            if let offset { output.string(offset) }
        }]
    }

    /// `removed-from-group` {group, by}, to the removed user's sockets.
    static func removed(from room: RoomID, by actor: UserID, at offset: Offset, recovery: Bool) -> EncodedEvent {
        EncodedEvent("removed-from-group") { output in
            output.beginObject()
            output.key("group"); output.string(room.value)
            output.key("by"); output.string(actor.value)
            output.endObject()
            if recovery { output.string(String(offset.value)) }
        }
    }

    /// The event name and a writer of its arguments.
    static func arguments(for event: ChatEvent, at offset: Offset) -> (String, (inout JSONOutput) -> Void) {
        let group = event.room.value
        switch event.body {
        case .roomCreated, .memberJoined:
            return ("user-joined", { $0.string(event.actor.value) })
        case .memberLeft:
            return ("user-left", { $0.string(event.actor.value) })
        case .memberInvited(let user):
            return ("member-invited", { memberNotice(&$0, group: group, user: user, by: event.actor) })
        case .invitationRevoked(let user):
            return ("invitation-revoked", { memberNotice(&$0, group: group, user: user, by: event.actor) })
        case .memberRemoved(let user):
            return ("member-removed", { memberNotice(&$0, group: group, user: user, by: event.actor) })
        case .messageSent(let clientMessageID, let text, let clientCreatedMs, let clientCreatedText, let replyTo):
            return ("send-group-message", { output in
                message(&output, group: group, id: offset.value, text: text, username: event.actor.value,
                        created: clientCreatedMs, createdText: clientCreatedText, clientID: clientMessageID, replyTo: replyTo?.offset)
            })
        case .messageEdited(let message, let text):
            return ("message-edited", { output in
                output.beginObject()
                output.key("group"); output.string(group)
                output.key("id"); output.integer(Int64(message.offset))
                output.key("message"); output.string(text)
                output.key("username"); output.string(event.actor.value)
                output.endObject()
            })
        case .messageDeleted(let message):
            return ("message-deleted", { output in
                output.beginObject()
                output.key("group"); output.string(group)
                output.key("id"); output.integer(Int64(message.offset))
                output.key("username"); output.string(event.actor.value)
                output.endObject()
            })
        case .tokensRevoked:
            // About no room, so sent to none (`RoomID.none` has no subscribers).
            return ("tokens-revoked", { $0.string(event.actor.value) })
        case .directRoomCreated:
            // Its room's subscribers (its users, once they join it) see its opener arrive.
            return ("user-joined", { $0.string(event.actor.value) })
        case .reactionAdded(let message, let emoji), .reactionRemoved(let message, let emoji):
            let name = if case .reactionAdded = event.body { "reaction-added" } else { "reaction-removed" }
            return (name, { output in
                output.beginObject()
                output.key("group"); output.string(group)
                output.key("id"); output.integer(Int64(message.offset))
                output.key("emoji"); output.string(emoji)
                output.key("username"); output.string(event.actor.value)
                output.endObject()
            })
        case .readMarked(let message):
            // To its user's sockets only (`LiveRooms`, `Replay`).
            return ("read-marker", { output in
                output.beginObject()
                output.key("group"); output.string(group)
                output.key("id"); output.integer(Int64(message.offset))
                output.endObject()
            })
        }
    }

    /// `mentioned` {group, id, by}: to every socket of a member a message mentions.
    static func mentioned(_ event: ChatEvent, at offset: Offset, recovery: Bool) -> EncodedEvent {
        EncodedEvent("mentioned") { output in
            output.beginObject()
            output.key("group"); output.string(event.room.value)
            output.key("id"); output.integer(Int64(offset.value))
            output.key("by"); output.string(event.actor.value)
            output.endObject()
            if recovery { output.string(String(offset.value)) }
        }
    }

    /// `direct-opened` {group, by, with}: to every socket of both users of a new direct room.
    static func directOpened(_ event: ChatEvent, peer: UserID, at offset: Offset, recovery: Bool) -> EncodedEvent {
        EncodedEvent("direct-opened") { output in
            output.beginObject()
            output.key("group"); output.string(event.room.value)
            output.key("by"); output.string(event.actor.value)
            output.key("with"); output.string(peer.value)
            output.endObject()
            if recovery { output.string(String(offset.value)) }
        }
    }

    static func memberNotice(_ output: inout JSONOutput, group: String, user: UserID, by actor: UserID) {
        output.beginObject()
        output.key("group"); output.string(group)
        output.key("username"); output.string(user.value)
        output.key("by"); output.string(actor.value)
        output.endObject()
    }

    /// A message in the `send-group-message` shape (also a `history` entry's).
    static func message(_ output: inout JSONOutput, group: String, id: UInt64, text: String?, username: String,
                        created: Int64, createdText: String?, clientID: String, replyTo: UInt64? = nil, edited: Bool = false,
                        deleted: Bool = false) {
        output.beginObject()
        output.key("group"); output.string(group)
        output.key("message")
        if let text { output.string(text) } else { output.null() }
        output.key("username"); output.string(username)
        // `created` as the client sent it: its text when it sent text, else the number.
        output.key("created")
        if let createdText { output.string(createdText) } else { output.integer(created) }
        output.key("id"); output.integer(Int64(id))
        if !clientID.hasPrefix(generatedClientIDPrefix) {
            output.key("client_id"); output.string(clientID)
        }
        if let replyTo { output.key("reply_to"); output.integer(Int64(replyTo)) }
        if edited { output.key("edited"); output.bool(true) }
        if deleted { output.key("deleted"); output.bool(true) }
        output.endObject()
    }

    /// A `my-groups` entry: the room, and the caller's read marker and unread counts in it.
    /// A direct room is named after the other user.
    static func groupEntry(_ room: ChatService.RoomSummary) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("group", .string(room.id.value)), ("name", .string(room.directWith?.value ?? room.name)), ("private", .bool(room.isPrivate)),
            ("owner", .string(room.owner.value)), ("members", .number(Double(room.memberCount))),
            ("direct", .bool(room.directWith != nil)),
        ]
        if let with = room.directWith { fields.append(("with", .string(with.value))) }
        fields.append(("last_read", room.lastRead.map { .number(Double($0.offset)) } ?? .null))
        fields.append(("unread", .number(Double(room.unread?.messages ?? 0))))
        fields.append(("mentions", .number(Double(room.unread?.mentions ?? 0))))
        return .object(fields)
    }

    /// A `history` entry as a value (acks are built as values).
    static func historyEntry(_ message: HistoryMessage) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("group", .string(message.room)),
            ("message", message.text.map(JSONValue.string) ?? .null),
            ("username", .string(message.author)),
            ("created", message.clientCreatedText.map(JSONValue.string) ?? .number(Double(message.clientCreatedMs))),
            ("id", .number(Double(message.offset))),
        ]
        if !message.clientMessageID.hasPrefix(generatedClientIDPrefix) {
            members.append(("client_id", .string(message.clientMessageID)))
        }
        if let replyTo = message.replyTo { members.append(("reply_to", .number(Double(replyTo)))) }
        if message.editedMs != nil { members.append(("edited", .bool(true))) }
        if message.deletedMs != nil { members.append(("deleted", .bool(true))) }
        if !message.reactions.isEmpty {
            members.append(("reactions", .object(message.reactions.map { ($0.emoji, .array($0.users.map(JSONValue.string))) })))
        }
        return .object(members)
    }

    /// Tells a client its event was refused: in the ack it asked for, else as an `error`
    /// event `{event, code, message}`.
    static func refuse(_ socket: SocketRef, event: String, ackID: UInt64?, _ failure: ChatFailure, server: SocketIOServer) {
        ChatMetrics.refused(failure.code)
        if let ackID {
            server.ack(socket, id: ackID, [self.failure(failure)])
        } else {
            server.emit(socket, event: "error", [.object([("event", .string(event)), ("code", .string(failure.code.rawValue)),
                                                          ("message", .string(failure.message))])])
        }
    }

    /// A failed command's ack argument: `{ok: false, error: {code, message}}`.
    static func failure(_ failure: ChatFailure) -> JSONValue {
        .object([("ok", .bool(false)), ("error", .object([("code", .string(failure.code.rawValue)), ("message", .string(failure.message))]))])
    }

    /// The fields of a command's ack (with `ok: true`): the room for a creation, join or leave;
    /// the message id for a send. (A socket's `join-group` adds the roster: `ChatGateway.join`.)
    static func ackFields(of command: ChatService.Command, _ performed: ChatService.Performed) -> [(String, JSONValue)] {
        switch command {
        case .create(let room, _, _), .join(let room, _), .leave(let room):
            return [("group", .string(room.value))]
        case .send:
            return performed.messageID.map { [("id", .number(Double($0.value)))] } ?? []
        case .openDirect:
            return performed.room.map { [("group", .string($0.value))] } ?? []
        case .invite, .revokeInvite, .remove, .edit, .delete, .react, .unreact, .markRead:
            return []
        }
    }

    /// A successful command's ack argument: `{ok: true, ...fields}`.
    static func success(_ fields: [(String, JSONValue)] = []) -> JSONValue {
        .object([("ok", .bool(true))] + fields)
    }
}
