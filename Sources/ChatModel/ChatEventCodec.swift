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
        case tokensRevoked = 10
        case directRoomCreated = 11
        case reactionAdded = 12
        case reactionRemoved = 13
        case readMarked = 14
    }

    public enum Decoded: Sendable, Equatable {
        case event(ChatEvent)
        /// A record of a version or type this build does not know: skip it.
        case unknown(version: UInt8, type: UInt8)
    }

    public static func encode(_ event: ChatEvent) -> ByteBuffer {
        let bytes = encodedBytes(event)
        var buffer = ByteBufferAllocator().buffer(capacity: bytes)
        write(event, measured: bytes, into: &buffer)
        return buffer
    }

    /// Appends `event`'s record to `buffer`: measured first, then written in one piece (a
    /// write per field cost a ByteBuffer call each, with its checks and growth: about 7,000
    /// instructions for a chat message).
    public static func encode(_ event: ChatEvent, into buffer: inout ByteBuffer) {
        write(event, measured: encodedBytes(event), into: &buffer)
    }

    /// Writes `event`'s record, of `bytes` bytes as `encodedBytes` measured it, in one piece.
    private static func write(_ event: ChatEvent, measured bytes: Int, into buffer: inout ByteBuffer) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes) { raw in
            guard let base = raw.baseAddress else { return 0 }
            var writer = RawWriter(base: base)
            write(event, to: &writer)
            precondition(writer.offset == bytes, "a record measured \(bytes) bytes and wrote \(writer.offset)")
            return bytes
        }
    }

    /// Decodes one record.
    ///
    /// With `includeText: false` the message text of `messageSent` and `messageEdited` is
    /// checked for length but not decoded (the event carries `""`): the room state never looks
    /// at it, and skipping it makes state replay much faster.
    /// - Throws: `ChatEventDecodingError` when a record of a known version and type is
    ///   malformed (short, a length past the end or over its limit, invalid UTF-8, an invalid
    ///   identifier, an unknown flag).
    public static func decode(_ record: ByteBuffer, includeText: Bool = true) throws(ChatEventDecodingError) -> Decoded {
        try record.withUnsafeReadableBytes { bytes in
            Result { () throws(ChatEventDecodingError) -> Decoded in try decode(bytes: bytes, includeText: includeText) }
        }.get()
    }

    /// `decode` over the record's bytes: one borrow of the buffer for the whole record, then
    /// plain pointer reads.
    public static func decode(bytes: UnsafeRawBufferPointer, includeText: Bool = true) throws(ChatEventDecodingError) -> Decoded {
        guard bytes.count >= 2 else {
            throw ChatEventDecodingError("record of \(bytes.count) bytes is shorter than its 2-byte prefix")
        }
        let recordVersion = bytes[0]
        let typeByte = bytes[1]
        guard recordVersion == version, let type = EventType(rawValue: typeByte) else {
            return .unknown(version: recordVersion, type: typeByte)
        }
        var fields = FieldReader(bytes: bytes, index: 2, type: type)
        let timestampMs = try fields.integer(Int64.self, "timestamp")
        let actor = try fields.user("actor")
        let room = type == .tokensRevoked ? try fields.noRoom() : try fields.room()
        let body: ChatEvent.Body
        switch type {
        case .roomCreated:
            let name = try fields.short("name")
            let flags = try fields.integer(UInt8.self, "flags")
            guard flags <= 1 else { throw ChatEventDecodingError("roomCreated event: unknown flags \(flags)") }
            body = .roomCreated(name: name, isPrivate: flags == 1)
        case .memberInvited:
            body = .memberInvited(user: try fields.user("user"))
        case .invitationRevoked:
            body = .invitationRevoked(user: try fields.user("user"))
        case .memberJoined:
            body = .memberJoined
        case .memberLeft:
            body = .memberLeft
        case .memberRemoved:
            body = .memberRemoved(user: try fields.user("user"))
        case .messageSent:
            let clientMessageID = try fields.short("client message id")
            let clientCreatedMs = try fields.integer(Int64.self, "client time")
            let text = try fields.long("text", decode: includeText)
            var clientCreatedText: String?
            if fields.remaining > 0 {
                let given = try fields.short("client time text")
                if !given.isEmpty { clientCreatedText = given }
            }
            let replyTo = fields.remaining > 0 ? MessageID(try fields.integer(UInt64.self, "reply to")) : nil
            body = .messageSent(clientMessageID: clientMessageID, text: text, clientCreatedMs: clientCreatedMs,
                                clientCreatedText: clientCreatedText, replyTo: replyTo)
        case .messageEdited:
            let message = MessageID(try fields.integer(UInt64.self, "message"))
            body = .messageEdited(message: message, text: try fields.long("text", decode: includeText))
        case .messageDeleted:
            body = .messageDeleted(message: MessageID(try fields.integer(UInt64.self, "message")))
        case .tokensRevoked:
            body = .tokensRevoked(beforeMs: try fields.integer(Int64.self, "before"))
        case .directRoomCreated:
            body = .directRoomCreated(peer: try fields.user("peer"))
        case .reactionAdded:
            let message = MessageID(try fields.integer(UInt64.self, "message"))
            body = .reactionAdded(message: message, emoji: try fields.short("emoji"))
        case .reactionRemoved:
            let message = MessageID(try fields.integer(UInt64.self, "message"))
            body = .reactionRemoved(message: message, emoji: try fields.short("emoji"))
        case .readMarked:
            body = .readMarked(message: MessageID(try fields.integer(UInt64.self, "message")))
        }
        // Bytes after the known fields are fields of a later minor revision: ignored.
        return .event(ChatEvent(timestampMs: timestampMs, actor: actor, room: room, body: body))
    }

    /// A `messageSent` event's fields, borrowed from its record's bytes (valid only inside
    /// `withMessageSent`'s closure).
    public struct MessageSentFields {
        public let timestampMs: Int64
        /// The author's user id: printable ASCII, a valid `UserID`.
        public let actor: UnsafeBufferPointer<UInt8>
        /// The room id: printable ASCII, a valid `RoomID`.
        public let room: UnsafeBufferPointer<UInt8>
        /// Valid UTF-8.
        public let clientMessageID: UnsafeBufferPointer<UInt8>
        public let clientCreatedMs: Int64
        /// Valid UTF-8 when read with `includeText` (the default); unchecked otherwise.
        public let text: UnsafeBufferPointer<UInt8>
        /// The client's time as the text it sent, when it sent text; valid UTF-8.
        public let clientCreatedText: UnsafeBufferPointer<UInt8>?
        /// The message this one replies to, if any.
        public let replyTo: UInt64?
    }

    /// Whether `record` is a `messageEdited` or `messageDeleted` of this version: two bytes
    /// read, for readers that act on a few types alone (the search index).
    public static func isEditOrDeletion(_ record: ByteBuffer) -> Bool {
        let type = type(of: record)
        return type == .messageEdited || type == .messageDeleted
    }

    /// Whether `record` is a `messageSent` of this version: two bytes read.
    public static func isMessageSent(_ record: ByteBuffer) -> Bool {
        type(of: record) == .messageSent
    }

    /// The type of a record of this version, nil for another version or an unknown type.
    private static func type(of record: ByteBuffer) -> EventType? {
        guard record.getInteger(at: record.readerIndex, as: UInt8.self) == version,
              let type = record.getInteger(at: record.readerIndex + 1, as: UInt8.self)
        else { return nil }
        return EventType(rawValue: type)
    }

    /// Reads a `messageSent` record without building its strings, for projections that copy
    /// the fields' bytes (History's blocks). The checks are `decode`'s: a record this throws
    /// for, `decode` throws for too.
    ///
    /// - Parameter includeText: as `decode`'s: when false the text is checked for length only
    ///   (and `fields.text` may not be UTF-8).
    /// - Returns: `body`'s result; nil when the record is not a `messageSent` of this version,
    ///   or its actor or room is not plain printable ASCII (the rare identifiers that need
    ///   `decode`'s full check): decode those with `decode`.
    @inlinable  // specialized for the caller's result: unspecialized, it looked up generic metadata on every call
    public static func withMessageSent<R>(
        _ record: ByteBuffer,
        includeText: Bool = true,
        _ body: (MessageSentFields) throws -> R
    ) throws -> R? {
        try record.withUnsafeReadableBytes { bytes in
            guard let fields = try messageSentFields(bytes, includeText: includeText) else { return nil }
            return try body(fields)
        }
    }

    /// `withMessageSent` over a record's bytes (as `Journal`'s `RecordBatch.forEachRecord`
    /// lends them): the fields point into `bytes` and are valid as long as they are.
    public static func messageSentFields(_ bytes: UnsafeRawBufferPointer, includeText: Bool = true) throws(ChatEventDecodingError) -> MessageSentFields? {
        guard bytes.count >= 2, bytes[0] == version, bytes[1] == EventType.messageSent.rawValue else { return nil }
        var fields = FieldReader(bytes: bytes, index: 2, type: .messageSent)
        let timestampMs = try fields.integer(Int64.self, "timestamp")
        guard let actor = try fields.plainIdentifier("actor", maxBytes: UserID.maxBytes),
              let room = try fields.plainIdentifier("room", maxBytes: RoomID.maxBytes)
        else { return nil }
        let clientMessageIDLength = Int(try fields.integer(UInt16.self, "client message id"))
        let clientMessageID = try fields.utf8(length: clientMessageIDLength, limit: shortStringBytesLimit, "client message id")
        let clientCreatedMs = try fields.integer(Int64.self, "client time")
        let textLength = Int(try fields.integer(UInt32.self, "text"))
        let text = includeText
            ? try fields.utf8(length: textLength, limit: textBytesLimit, "text")
            : try fields.take(textLength, limit: textBytesLimit, "text")
        var clientCreatedText: UnsafeBufferPointer<UInt8>?
        if fields.remaining > 0 {
            let length = Int(try fields.integer(UInt16.self, "client time text"))
            let given = try fields.utf8(length: length, limit: shortStringBytesLimit, "client time text")
            if length > 0 { clientCreatedText = given }
        }
        let replyTo = fields.remaining > 0 ? try fields.integer(UInt64.self, "reply to") : nil
        return MessageSentFields(timestampMs: timestampMs, actor: actor, room: room, clientMessageID: clientMessageID,
                                 clientCreatedMs: clientCreatedMs, text: text, clientCreatedText: clientCreatedText, replyTo: replyTo)
    }

    /// Reads the fields of one event from its bytes. Field names are static strings: error
    /// text is built only when there is an error.
    private struct FieldReader {
        let bytes: UnsafeRawBufferPointer
        var index: Int
        let type: EventType

        var remaining: Int { bytes.count - index }

        mutating func integer<T: FixedWidthInteger>(_: T.Type, _ field: StaticString) throws(ChatEventDecodingError) -> T {
            let size = MemoryLayout<T>.size
            guard remaining >= size else { throw ChatEventDecodingError("\(type) event ends inside its \(field)") }
            let value = T(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: T.self))
            index += size
            return value
        }

        /// The next `length` bytes, after checking them against `limit` and the end.
        mutating func take(_ length: Int, limit: Int, _ field: StaticString) throws(ChatEventDecodingError) -> UnsafeBufferPointer<UInt8> {
            guard length <= limit else { throw ChatEventDecodingError("\(type) event: \(field) of \(length) bytes exceeds \(limit)") }
            guard length <= remaining else { throw ChatEventDecodingError("\(type) event ends inside its \(field)") }
            let taken = UnsafeRawBufferPointer(rebasing: bytes[index..<(index + length)]).assumingMemoryBound(to: UInt8.self)
            index += length
            return taken
        }

        mutating func string(length: Int, limit: Int, _ field: StaticString) throws(ChatEventDecodingError) -> String {
            String(decoding: try utf8(length: length, limit: limit, field), as: UTF8.self)
        }

        /// The next `length` bytes, checked against `limit`, the end, and for valid UTF-8.
        mutating func utf8(length: Int, limit: Int, _ field: StaticString) throws(ChatEventDecodingError) -> UnsafeBufferPointer<UInt8> {
            let taken = try take(length, limit: limit, field)
            guard UTF8Validation.isValid(taken) else {
                throw ChatEventDecodingError("\(type) event: \(field) is not valid UTF-8")
            }
            return taken
        }

        mutating func short(_ field: StaticString) throws(ChatEventDecodingError) -> String {
            let length = Int(try integer(UInt16.self, field))
            return try string(length: length, limit: shortStringBytesLimit, field)
        }

        mutating func long(_ field: StaticString, decode: Bool) throws(ChatEventDecodingError) -> String {
            let length = Int(try integer(UInt32.self, field))
            guard decode else {
                guard length <= textBytesLimit, length <= remaining else {
                    throw ChatEventDecodingError("\(type) event: \(field) of \(length) bytes is over its limit or past the end")
                }
                index += length
                return ""
            }
            return try string(length: length, limit: textBytesLimit, field)
        }

        /// An identifier's string, and whether it is already known valid: checked and built in
        /// one pass over its bytes when they are printable ASCII (nearly always); otherwise
        /// read as a plain string for the caller to validate.
        mutating func identifier(_ field: StaticString, maxBytes: Int) throws(ChatEventDecodingError) -> (String, valid: Bool) {
            let start = index
            if let plain = try plainIdentifier(field, maxBytes: maxBytes) {
                return (String(decoding: plain, as: UTF8.self), true)
            }
            index = start
            return (try short(field), false)
        }

        /// The identifier's bytes when they are printable ASCII within `maxBytes` (then it is
        /// valid as it is); otherwise nil, and the reader's position is unspecified.
        mutating func plainIdentifier(_ field: StaticString, maxBytes: Int) throws(ChatEventDecodingError) -> UnsafeBufferPointer<UInt8>? {
            let length = Int(try integer(UInt16.self, field))
            guard length > 0, length <= maxBytes, length <= remaining else { return nil }
            let candidate = UnsafeRawBufferPointer(rebasing: bytes[index..<(index + length)]).assumingMemoryBound(to: UInt8.self)
            guard UTF8Validation.isPrintableASCII(candidate) else { return nil }
            index += length
            return candidate
        }

        mutating func user(_ field: StaticString) throws(ChatEventDecodingError) -> UserID {
            let (value, valid) = try identifier(field, maxBytes: UserID.maxBytes)
            if valid { return UserID(unchecked: value) }
            guard let user = UserID(value) else {
                throw ChatEventDecodingError("\(type) event: \(field) \(value.debugDescription) is not a valid user id")
            }
            return user
        }

        mutating func room() throws(ChatEventDecodingError) -> RoomID {
            let (value, valid) = try identifier("room", maxBytes: RoomID.maxBytes)
            if valid { return RoomID(unchecked: value) }
            guard let room = RoomID(value) else {
                throw ChatEventDecodingError("\(type) event: room \(value.debugDescription) is not a valid room id")
            }
            return room
        }

        /// The room field of an event about no room: empty.
        mutating func noRoom() throws(ChatEventDecodingError) -> RoomID {
            let (value, _) = try identifier("room", maxBytes: RoomID.maxBytes)
            guard value.isEmpty else { throw ChatEventDecodingError("\(type) event: room \(value.debugDescription) where none belongs") }
            return .none
        }
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
