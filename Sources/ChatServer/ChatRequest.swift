import ChatModel
import SocketIO

/// A client event's payload, checked: each classic event's fields with their types and
/// limits. Anything else (a wrong type, a missing field, an oversize value, an unknown
/// event) is `invalid_payload`, and the connection goes on.
///
/// Pure parsing of `JSONValue`s; no state.
enum ChatRequest: Sendable, Equatable {
    /// A command the service performs as the socket's user (a send, and the room
    /// administration events); `username` names that user in development mode (a send's).
    case perform(ChatService.Command, username: String?)
    case join(RoomID, username: String?, after: Offset?)
    case leave(RoomID, username: String?)
    case typing(RoomID, username: String?)
    case members(RoomID)
    case myGroups
    case history(RoomID, before: UInt64?, after: UInt64?, limit: Int?)
    case search(query: String, group: RoomID?, before: UInt64?, limit: Int?)

    typealias Offset = UInt64

    /// The events this server answers.
    static let eventNames: Set<String> = [
        "join-group", "send-group-message", "user-typing", "leave-group", "create-group", "invite", "revoke-invite",
        "remove-member", "edit-message", "delete-message", "members", "my-groups", "history",
        "open-direct", "react", "unreact", "mark-read", "search",
    ]

    /// Parses event `name` from its received arguments. A `send-group-message` (nearly every
    /// event) is read straight from the packet's text, with no `JSONValue` tree; anything
    /// that path does not accept as it is goes through `parse(_:_:)`, which says what is wrong.
    static func parse(_ name: String, arguments: SocketEventArguments) throws(PayloadError) -> ChatRequest {
        if name == "send-group-message", let send = try? arguments.read(readSend) { return send }
        return try parse(name, arguments.values)
    }

    /// The command of a request that changes something (nil for reads and typing).
    var command: ChatService.Command? {
        switch self {
        case .perform(let command, _): command
        case .join(let room, _, _): .join(room, createIfMissing: true)
        case .leave(let room, _): .leave(room)
        case .typing, .members, .myGroups, .history, .search: nil
        }
    }

    /// Refuses a client id that claims the server's prefix (FORMAT.md §5, "Client message ids").
    static func checkClientID(_ id: String?) throws(PayloadError) {
        guard let id, !ClientMessageIDs.mayBeSentByClients(id) else { return }
        throw PayloadError("client_id may not start with \(ClientMessageIDs.generatedPrefix): the server makes those up")
    }

    /// `send-group-message`'s payload from the text: nil for anything but a plain, valid one.
    private static func readSend(_ reader: inout JSONReader) throws(SocketIOProtocolError) -> ChatRequest? {
        guard try reader.nextElement(), reader.nextKind == .object else { return nil }
        try reader.beginObject()
        var group: String?, message: String?, username: String?, clientID: String?
        var created: (Int64, String?) = (0, nil)
        while let key = try reader.nextMember() {
            if key == "group" || key == "message" || key == "username" || key == "client_id" {
                guard reader.nextKind == .string else { return nil }
                let value = try reader.readString()
                // A repeated member goes the general way, which reads it as that path does.
                func set(_ field: inout String?) -> Bool {
                    guard field == nil else { return false }
                    field = value
                    return true
                }
                let fresh = key == "group" ? set(&group) : key == "message" ? set(&message)
                    : key == "username" ? set(&username) : set(&clientID)
                guard fresh else { return nil }
            } else if key == "created" {
                switch reader.nextKind {
                case .number:
                    let number = try reader.readNumber()
                    guard number.isFinite, abs(number) < 9_007_199_254_740_992 else { return nil }
                    created = (Int64(number.rounded()), nil)
                case .string:
                    let text = try reader.readString()
                    guard let ms = ISO8601.milliseconds(text) else { return nil }
                    created = (ms, text)
                default:
                    return nil
                }
            } else if key == "reply_to" {
                return nil  // the general way reads and checks it
            } else {
                try reader.skipValue()
            }
        }
        guard let group, let room = RoomID(group), let message, clientID.map(ClientMessageIDs.mayBeSentByClients) ?? true else { return nil }
        return .perform(.send(room, text: message, createdMs: created.0, createdText: created.1, clientID: clientID), username: username)
    }

    /// Parses event `name` with `arguments` (the first is the payload object).
    /// - Parameter fromStandby: a standby's forwarded command, which may carry a client id the
    ///   standby made up (`ClientMessageIDs.generatedPrefix`).
    /// - Throws: `PayloadError` saying what is wrong, for the client.
    static func parse(_ name: String, _ arguments: [JSONValue], fromStandby: Bool = false) throws(PayloadError) -> ChatRequest {
        let payload = Payload(arguments.first ?? .null, event: name)
        switch name {
        case "join-group":
            return .join(try payload.room(), username: try payload.optionalString("username"), after: try payload.optionalOffset("after"))
        case "send-group-message":
            let (created, createdText) = try payload.created()
            let clientID = try payload.optionalString("client_id")
            if !fromStandby { try checkClientID(clientID) }
            return .perform(.send(try payload.room(), text: try payload.string("message"), createdMs: created, createdText: createdText,
                                  clientID: clientID, replyTo: try payload.optionalOffset("reply_to").map(MessageID.init)),
                            username: try payload.optionalString("username"))
        case "user-typing":
            return .typing(try payload.room(), username: try payload.optionalString("username"))
        case "leave-group":
            return .leave(try payload.room(), username: try payload.optionalString("username"))
        case "create-group":
            return .perform(.create(try payload.room(), isPrivate: try payload.optionalBool("private") ?? false, name: try payload.optionalString("name")),
                            username: nil)
        case "invite":
            return .perform(.invite(try payload.room(), try payload.user()), username: nil)
        case "revoke-invite":
            return .perform(.revokeInvite(try payload.room(), try payload.user()), username: nil)
        case "remove-member":
            return .perform(.remove(try payload.room(), try payload.user()), username: nil)
        case "edit-message":
            return .perform(.edit(try payload.room(), MessageID(try payload.offset("id")), text: try payload.string("message")), username: nil)
        case "delete-message":
            return .perform(.delete(try payload.room(), MessageID(try payload.offset("id"))), username: nil)
        case "open-direct":
            return .perform(.openDirect(try payload.user()), username: nil)
        case "react", "unreact":
            let room = try payload.room()
            let message = MessageID(try payload.offset("id"))
            let emoji = try payload.string("emoji")
            return .perform(name == "react" ? .react(room, message, emoji: emoji) : .unreact(room, message, emoji: emoji), username: nil)
        case "mark-read":
            return .perform(.markRead(try payload.room(), MessageID(try payload.offset("id"))), username: nil)
        case "search":
            let limit = try payload.optionalOffset("limit").map { Int(clamping: $0) }
            let group = payload.field("group") == nil ? nil : try payload.room()
            return .search(query: try payload.string("query"), group: group, before: try payload.optionalOffset("before"), limit: limit)
        case "members":
            return .members(try payload.room())
        case "my-groups":
            return .myGroups
        case "history":
            let limit = try payload.optionalOffset("limit").map { Int(clamping: $0) }
            return .history(try payload.room(), before: try payload.optionalOffset("before"),
                            after: try payload.optionalOffset("after"), limit: limit)
        default:
            throw PayloadError("unknown event \(name)")
        }
    }

    /// The fields of a payload object, read with their expected types.
    struct Payload {
        let value: JSONValue
        let event: String

        init(_ value: JSONValue, event: String) {
            self.value = value
            self.event = event
        }

        func field(_ key: String) -> JSONValue? {
            guard let member = value[key], member != .null else { return nil }
            return member
        }

        func string(_ key: String) throws(PayloadError) -> String {
            guard case .object = value else { throw PayloadError("\(event) takes an object payload") }
            guard let member = field(key) else { throw PayloadError("\(event) needs \(key)") }
            guard case .string(let string) = member else { throw PayloadError("\(key) must be a string") }
            return string
        }

        func optionalString(_ key: String) throws(PayloadError) -> String? {
            guard let member = field(key) else { return nil }
            guard case .string(let string) = member else { throw PayloadError("\(key) must be a string") }
            return string
        }

        func optionalBool(_ key: String) throws(PayloadError) -> Bool? {
            guard let member = field(key) else { return nil }
            guard case .bool(let bool) = member else { throw PayloadError("\(key) must be true or false") }
            return bool
        }

        func room() throws(PayloadError) -> RoomID {
            let name = try string("group")
            guard let room = RoomID(name) else {
                throw PayloadError("group must be 1 to \(RoomID.maxBytes) bytes of NFC text without control characters")
            }
            return room
        }

        func user() throws(PayloadError) -> UserID {
            let name = try string("username")
            guard let user = UserID(name) else {
                throw PayloadError("username must be 1 to \(UserID.maxBytes) bytes of NFC text without control characters")
            }
            return user
        }

        func offset(_ key: String) throws(PayloadError) -> UInt64 {
            guard let value = try optionalOffset(key) else { throw PayloadError("\(event) needs \(key)") }
            return value
        }

        /// A non-negative integer (JSON numbers are doubles: exact up to 2^53).
        func optionalOffset(_ key: String) throws(PayloadError) -> UInt64? {
            guard let member = field(key) else { return nil }
            guard case .number(let number) = member, number >= 0, number == number.rounded(), number < 9_007_199_254_740_992 else {
                throw PayloadError("\(key) must be a non-negative integer")
            }
            return UInt64(number)
        }

        /// `created`: milliseconds since the Unix epoch as a number, or an ISO-8601 time (then
        /// also its text, echoed as it came); absent: 0.
        func created() throws(PayloadError) -> (Int64, String?) {
            guard let member = field("created") else { return (0, nil) }
            switch member {
            case .number(let number) where number.isFinite && abs(number) < 9_007_199_254_740_992:
                return (Int64(number.rounded()), nil)
            case .string(let text):
                guard let ms = ISO8601.milliseconds(text) else { throw PayloadError("created must be a number of milliseconds or an ISO-8601 time") }
                return (ms, text)
            default:
                throw PayloadError("created must be a number of milliseconds or an ISO-8601 time")
            }
        }
    }
}

struct PayloadError: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// ISO-8601 times as JavaScript's `Date.prototype.toISOString` writes them (and with an offset
/// instead of `Z`, or without fraction), to milliseconds since the Unix epoch. Without
/// Foundation's formatters, which are slow and locale-bound.
enum ISO8601 {
    static func milliseconds(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20, bytes.count <= 35 else { return nil }
        func number(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[start..<(start + count)] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        guard let year = number(0, 4), bytes[4] == 0x2D, let month = number(5, 2), bytes[7] == 0x2D,
              let day = number(8, 2), bytes[10] == 0x54 || bytes[10] == 0x20, let hour = number(11, 2), bytes[13] == 0x3A,
              let minute = number(14, 2), bytes[16] == 0x3A, let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var index = 19
        var millis = 0
        if index < bytes.count, bytes[index] == 0x2E {
            index += 1
            var digits = 0
            while index < bytes.count, (0x30...0x39).contains(bytes[index]) {
                if digits < 3 { millis = millis * 10 + Int(bytes[index] - 0x30) }
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            if digits < 3 { for _ in digits..<3 { millis *= 10 } }
        }
        guard index < bytes.count else { return nil }
        var offsetMinutes = 0
        switch bytes[index] {
        case 0x5A:  // Z
            index += 1
        case 0x2B, 0x2D:  // + or -
            let sign = bytes[index] == 0x2B ? 1 : -1
            guard let oh = number(index + 1, 2), index + 3 < bytes.count, bytes[index + 3] == 0x3A,
                  let om = number(index + 4, 2) else { return nil }
            offsetMinutes = sign * (oh * 60 + om)
            index += 6
        default:
            return nil
        }
        guard index == bytes.count else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = ((days * 24 + hour) * 60 + minute) * 60 + second - offsetMinutes * 60
        return Int64(seconds) * 1000 + Int64(millis)
    }
}
