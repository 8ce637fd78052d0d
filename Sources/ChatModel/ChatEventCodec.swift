import NIOCore

/// The binary encoding of chat events, one per journal record. FORMAT.md ("Chat events")
/// draws it. Stateless.
///
/// Every record starts with a format version byte and an event type byte. A reader that meets
/// a version or type it does not know skips the record (`Decoded.unknown`) instead of failing,
/// so older readers survive newer writers; known types may gain fields at their end, which
/// older readers ignore.
public enum ChatEventCodec {
    public static let version: UInt8 = 1
    /// Limit of the u16-prefixed strings (user, room, name, client message id).
    public static let shortStringBytesLimit = 1024
    /// Limit of the u32-prefixed message text.
    public static let textBytesLimit = 1 << 20

    enum EventType: UInt8 {
        case roomCreated = 1
        case memberInvited = 2
        case invitationRevoked = 3
        case memberJoined = 4
        case memberLeft = 5
        case memberRemoved = 6
        case messageSent = 7
        case messageEdited = 8
        case messageDeleted = 9
    }

    public enum Decoded: Sendable, Equatable {
        case event(ChatEvent)
        /// A record of a version or type this build does not know: skip it.
        case unknown(version: UInt8, type: UInt8)
    }

    public static func encode(_ event: ChatEvent) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        encode(event, into: &buffer)
        return buffer
    }

    public static func encode(_ event: ChatEvent, into buffer: inout ByteBuffer) {
        func short(_ string: String) {
            let count = string.utf8.count
            precondition(count <= shortStringBytesLimit, "string of \(count) bytes exceeds \(shortStringBytesLimit); validate before encoding")
            buffer.writeInteger(UInt16(count), endianness: .little)
            buffer.writeString(string)
        }
        func long(_ string: String) {
            let count = string.utf8.count
            precondition(count <= textBytesLimit, "text of \(count) bytes exceeds \(textBytesLimit); validate before encoding")
            buffer.writeInteger(UInt32(count), endianness: .little)
            buffer.writeString(string)
        }
        let type: EventType = switch event.body {
        case .roomCreated: .roomCreated
        case .memberInvited: .memberInvited
        case .invitationRevoked: .invitationRevoked
        case .memberJoined: .memberJoined
        case .memberLeft: .memberLeft
        case .memberRemoved: .memberRemoved
        case .messageSent: .messageSent
        case .messageEdited: .messageEdited
        case .messageDeleted: .messageDeleted
        }
        buffer.writeInteger(version)
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(event.timestampMs, endianness: .little)
        short(event.actor.value)
        short(event.room.value)
        switch event.body {
        case .roomCreated(let name, let isPrivate):
            short(name)
            buffer.writeInteger(UInt8(isPrivate ? 1 : 0))
        case .memberInvited(let user), .invitationRevoked(let user), .memberRemoved(let user):
            short(user.value)
        case .memberJoined, .memberLeft:
            break
        case .messageSent(let clientMessageID, let text, let clientCreatedMs):
            short(clientMessageID)
            buffer.writeInteger(clientCreatedMs, endianness: .little)
            long(text)
        case .messageEdited(let message, let text):
            buffer.writeInteger(message.offset, endianness: .little)
            long(text)
        case .messageDeleted(let message):
            buffer.writeInteger(message.offset, endianness: .little)
        }
    }

    /// Decodes one record.
    /// - Throws: `ChatEventDecodingError` when a record of a known version and type is
    ///   malformed (short, a length past the end or over its limit, invalid UTF-8, an invalid
    ///   identifier, an unknown flag).
    public static func decode(_ record: ByteBuffer) throws(ChatEventDecodingError) -> Decoded {
        var buffer = record
        guard let recordVersion = buffer.readInteger(as: UInt8.self),
              let typeByte = buffer.readInteger(as: UInt8.self)
        else { throw ChatEventDecodingError("record of \(record.readableBytes) bytes is shorter than its 2-byte prefix") }
        guard recordVersion == version, let type = EventType(rawValue: typeByte) else {
            return .unknown(version: recordVersion, type: typeByte)
        }
        func integer<T: FixedWidthInteger>(_: T.Type, _ field: String) throws(ChatEventDecodingError) -> T {
            guard let value = buffer.readInteger(endianness: .little, as: T.self) else {
                throw ChatEventDecodingError("\(type) event ends inside its \(field)")
            }
            return value
        }
        func string(length: Int, limit: Int, _ field: String) throws(ChatEventDecodingError) -> String {
            guard length <= limit else { throw ChatEventDecodingError("\(type) event: \(field) of \(length) bytes exceeds \(limit)") }
            guard length <= buffer.readableBytes else { throw ChatEventDecodingError("\(type) event ends inside its \(field)") }
            let decoded = buffer.withUnsafeReadableBytes { raw in
                String(validating: UnsafeRawBufferPointer(rebasing: raw[0..<length]).assumingMemoryBound(to: UInt8.self), as: UTF8.self)
            }
            guard let decoded else { throw ChatEventDecodingError("\(type) event: \(field) is not valid UTF-8") }
            buffer.moveReaderIndex(forwardBy: length)
            return decoded
        }
        func short(_ field: String) throws(ChatEventDecodingError) -> String {
            try string(length: Int(try integer(UInt16.self, field + " length")), limit: shortStringBytesLimit, field)
        }
        func long(_ field: String) throws(ChatEventDecodingError) -> String {
            try string(length: Int(try integer(UInt32.self, field + " length")), limit: textBytesLimit, field)
        }
        func user(_ field: String) throws(ChatEventDecodingError) -> UserID {
            let value = try short(field)
            guard let user = UserID(value) else { throw ChatEventDecodingError("\(type) event: \(field) \(value.debugDescription) is not a valid user id") }
            return user
        }
        let timestampMs = try integer(Int64.self, "timestamp")
        let actor = try user("actor")
        let roomValue = try short("room")
        guard let room = RoomID(roomValue) else { throw ChatEventDecodingError("\(type) event: room \(roomValue.debugDescription) is not a valid room id") }
        let body: ChatEvent.Body
        switch type {
        case .roomCreated:
            let name = try short("name")
            let flags = try integer(UInt8.self, "flags")
            guard flags <= 1 else { throw ChatEventDecodingError("roomCreated event: unknown flags \(flags)") }
            body = .roomCreated(name: name, isPrivate: flags == 1)
        case .memberInvited:
            body = .memberInvited(user: try user("user"))
        case .invitationRevoked:
            body = .invitationRevoked(user: try user("user"))
        case .memberJoined:
            body = .memberJoined
        case .memberLeft:
            body = .memberLeft
        case .memberRemoved:
            body = .memberRemoved(user: try user("user"))
        case .messageSent:
            let clientMessageID = try short("client message id")
            let clientCreatedMs = try integer(Int64.self, "client time")
            body = .messageSent(clientMessageID: clientMessageID, text: try long("text"), clientCreatedMs: clientCreatedMs)
        case .messageEdited:
            let message = MessageID(try integer(UInt64.self, "message"))
            body = .messageEdited(message: message, text: try long("text"))
        case .messageDeleted:
            body = .messageDeleted(message: MessageID(try integer(UInt64.self, "message")))
        }
        // Bytes after the known fields are fields of a later minor revision: ignored.
        return .event(ChatEvent(timestampMs: timestampMs, actor: actor, room: room, body: body))
    }
}

/// A malformed chat event record.
public struct ChatEventDecodingError: Error, Sendable, CustomStringConvertible {
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    public var description: String { "malformed chat event: \(message)" }
}
