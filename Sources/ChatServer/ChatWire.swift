import ChatModel
import HummingbirdSocketIO
import Journal
import Projections
import SocketIO

/// What clients receive: each journal event as the Socket.IO event a room's sockets get, in
/// the tutorial's shapes (`send-group-message` {group, message, username, created, id},
/// `user-joined` / `user-left` with the username as a string), and the acks' shapes.
///
/// Pure functions; the README documents every shape with an example.
enum ChatWire {
    /// Client message ids the server makes up for sends that carry none: never echoed.
    static let generatedClientIDPrefix = "chatlog:"

    /// An event as its room receives it: the event name and its packet, encoded once for all
    /// recipients. `recovery` appends the offset (a string) as the last argument, as Socket.IO's
    /// connection state recovery expects.
    static func packet(for event: ChatEvent, at offset: Offset, recovery: Bool) -> EnginePacket {
        let (name, write) = arguments(for: event, at: offset)
        let text = SocketPacket.encodeEvent(name, namespace: "/") { output in
            write(&output)
            if recovery { output.string(String(offset.value)) }
        }
        return .message(text)
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
        case .messageSent(let clientMessageID, let text, let clientCreatedMs, let clientCreatedText):
            return ("send-group-message", { output in
                message(&output, group: group, id: offset.value, text: text, username: event.actor.value,
                        created: clientCreatedMs, createdText: clientCreatedText, clientID: clientMessageID)
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
                        created: Int64, createdText: String?, clientID: String, edited: Bool = false, deleted: Bool = false) {
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
        if edited { output.key("edited"); output.bool(true) }
        if deleted { output.key("deleted"); output.bool(true) }
        output.endObject()
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
        if message.editedMs != nil { members.append(("edited", .bool(true))) }
        if message.deletedMs != nil { members.append(("deleted", .bool(true))) }
        return .object(members)
    }

    /// Tells a client its event was refused: in the ack it asked for, else as an `error`
    /// event `{event, code, message}`.
    static func refuse(_ socket: SocketRef, event: String, ackID: UInt64?, code: String, message: String, server: SocketIOServer) {
        ChatMetrics.refused(code)
        if let ackID {
            server.ack(socket, id: ackID, [failure(code: code, message: message)])
        } else {
            server.emit(socket, event: "error", [.object([("event", .string(event)), ("code", .string(code)), ("message", .string(message))])])
        }
    }

    /// A failed command's ack argument: `{ok: false, error: {code, message}}`.
    static func failure(code: String, message: String) -> JSONValue {
        .object([("ok", .bool(false)), ("error", .object([("code", .string(code)), ("message", .string(message))]))])
    }

    /// A successful command's ack argument: `{ok: true, ...fields}`.
    static func success(_ fields: [(String, JSONValue)] = []) -> JSONValue {
        .object([("ok", .bool(true))] + fields)
    }
}
