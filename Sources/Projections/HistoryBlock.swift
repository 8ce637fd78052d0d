import Foundation
import NIOCore

/// Up to `capacity` consecutive messages of one room, stored as one row of the History
/// database. FORMAT.md §10 draws the encoding. A value type.
///
/// Storing messages in blocks makes a rebuild write one row per block instead of one per
/// message, which is what SQLite's per-row cost limits. A block holds its messages encoded,
/// as they are stored: an append copies a record's bytes in (no strings are built), writing
/// the block copies them out once, and `messages` decodes them for readers.
struct HistoryBlock: Sendable, Equatable {
    /// Messages per block.
    static let capacity = 64

    struct Message: Sendable, Equatable {
        var offset: UInt64
        var author: String
        var clientMessageID: String
        /// nil once deleted.
        var text: String?
        var clientCreatedMs: Int64
        var sentMs: Int64
        var editedMs: Int64?
        var deletedMs: Int64?
        /// The client's time as the text it sent, when it sent text.
        var clientCreatedText: String?

        func history(room: String) -> HistoryMessage {
            HistoryMessage(offset: offset, room: room, author: author, clientMessageID: clientMessageID, text: text,
                           clientCreatedMs: clientCreatedMs, sentMs: sentMs, editedMs: editedMs, deletedMs: deletedMs,
                           clientCreatedText: clientCreatedText)
        }
    }

    /// Messages in the block.
    private(set) var count = 0
    private(set) var firstOffset: UInt64?
    private(set) var lastOffset: UInt64?
    /// The messages' bytes as FORMAT.md §10 lays them out after the block's count. Always
    /// well-formed: built by the appends, or checked by `decode`.
    private var body: [UInt8] = []

    /// The fixed part of a message: five 64-bit fields.
    private static let fixedBytes = 5 * 8
    /// The text length that marks deleted text.
    private static let noText = UInt32.max
    /// The client time text length that marks its absence (the client sent a number).
    private static let noCreatedText = UInt16.max

    init() {}

    init(messages: [Message]) {
        for message in messages { append(message) }
    }

    var isFull: Bool { count >= Self.capacity }

    /// Appends a message from its fields' bytes. Offsets must increase.
    mutating func append(
        offset: UInt64, sentMs: Int64, clientCreatedMs: Int64, editedMs: Int64? = nil, deletedMs: Int64? = nil,
        author: UnsafeBufferPointer<UInt8>, clientMessageID: UnsafeBufferPointer<UInt8>, text: UnsafeBufferPointer<UInt8>?,
        clientCreatedText: UnsafeBufferPointer<UInt8>? = nil
    ) {
        precondition(lastOffset.map { offset > $0 } ?? true, "history block offsets must increase")
        if body.isEmpty { body.reserveCapacity(Self.capacity * 192) }
        Self.encode(offset: offset, sentMs: sentMs, clientCreatedMs: clientCreatedMs, editedMs: editedMs,
                    deletedMs: deletedMs, author: author, clientMessageID: clientMessageID, text: text,
                    clientCreatedText: clientCreatedText, into: &body)
        count += 1
        if firstOffset == nil { firstOffset = offset }
        lastOffset = offset
    }

    mutating func append(_ message: Message) {
        message.withFieldBytes { author, clientMessageID, text, createdText in
            append(offset: message.offset, sentMs: message.sentMs, clientCreatedMs: message.clientCreatedMs,
                   editedMs: message.editedMs, deletedMs: message.deletedMs,
                   author: author, clientMessageID: clientMessageID, text: text, clientCreatedText: createdText)
        }
    }

    private static func encode(
        offset: UInt64, sentMs: Int64, clientCreatedMs: Int64, editedMs: Int64?, deletedMs: Int64?,
        author: UnsafeBufferPointer<UInt8>, clientMessageID: UnsafeBufferPointer<UInt8>, text: UnsafeBufferPointer<UInt8>?,
        clientCreatedText: UnsafeBufferPointer<UInt8>?, into bytes: inout [UInt8]
    ) {
        func integer<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        }
        integer(offset)
        integer(sentMs)
        integer(clientCreatedMs)
        integer(editedMs ?? Int64.min)
        integer(deletedMs ?? Int64.min)
        integer(UInt16(author.count))
        bytes.append(contentsOf: author)
        integer(UInt16(clientMessageID.count))
        bytes.append(contentsOf: clientMessageID)
        if let text {
            integer(UInt32(text.count))
            bytes.append(contentsOf: text)
        } else {
            integer(noText)
        }
        if let clientCreatedText {
            precondition(clientCreatedText.count < Int(noCreatedText), "a client time text is short (validated by the rules)")
            integer(UInt16(clientCreatedText.count))
            bytes.append(contentsOf: clientCreatedText)
        } else {
            integer(noCreatedText)
        }
    }

    /// Changes the message at `offset` in place (its offset stays).
    /// - Returns: false when the block has no message at `offset`.
    mutating func update(offset: UInt64, _ change: (inout Message) -> Void) -> Bool {
        guard let range = range(of: offset) else { return false }
        var message = body.withUnsafeBufferPointer { Self.message(in: $0, at: range.lowerBound).message }
        change(&message)
        message.offset = offset
        var encoded: [UInt8] = []
        message.withFieldBytes { author, clientMessageID, text, createdText in
            Self.encode(offset: offset, sentMs: message.sentMs, clientCreatedMs: message.clientCreatedMs,
                        editedMs: message.editedMs, deletedMs: message.deletedMs,
                        author: author, clientMessageID: clientMessageID, text: text, clientCreatedText: createdText,
                        into: &encoded)
        }
        body.replaceSubrange(range, with: encoded)
        return true
    }

    /// The message at `offset`, decoded alone (nil when the block does not hold it).
    func message(at offset: UInt64) -> Message? {
        guard let range = range(of: offset) else { return nil }
        return body.withUnsafeBufferPointer { bytes in Self.message(in: bytes, at: range.lowerBound).message }
    }

    /// The bytes of the message at `offset`, found by walking the messages' lengths.
    private func range(of offset: UInt64) -> Range<Int>? {
        guard let firstOffset, let lastOffset, offset >= firstOffset, offset <= lastOffset else { return nil }
        return body.withUnsafeBytes { raw -> Range<Int>? in
            var position = 0
            while position < raw.count {
                let end = position + Self.size(in: raw, at: position)
                let found = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt64.self))
                if found == offset { return position..<end }
                if found > offset { return nil }
                position = end
            }
            return nil
        }
    }

    /// How many of the block's messages after offset `after` (-1: all) are not deleted and
    /// not by `author`: read from the bytes, building no strings.
    func countUnread(after: Int64, excluding author: String) -> Int {
        var author = author
        return author.withUTF8 { author in
            body.withUnsafeBytes { raw in
                var count = 0
                var position = 0
                while position < raw.count {
                    let end = position + Self.size(in: raw, at: position)
                    let offset = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt64.self))
                    let deleted = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: position + 32, as: Int64.self))
                    if after < 0 || offset > UInt64(after), deleted == Int64.min {
                        let cursor = position + Self.fixedBytes
                        let length = Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: cursor, as: UInt16.self)))
                        let name = UnsafeRawBufferPointer(rebasing: raw[(cursor + 2)..<(cursor + 2 + length)])
                        if !name.elementsEqual(UnsafeRawBufferPointer(author)) { count += 1 }
                    }
                    position = end
                }
                return count
            }
        }
    }

    /// The size of the well-formed message at `position`.
    private static func size(in raw: UnsafeRawBufferPointer, at position: Int) -> Int {
        func length<T: FixedWidthInteger>(at offset: Int, as: T.Type) -> Int {
            Int(T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self)))
        }
        var cursor = position + fixedBytes
        cursor += 2 + length(at: cursor, as: UInt16.self)
        cursor += 2 + length(at: cursor, as: UInt16.self)
        let text = raw.loadUnaligned(fromByteOffset: cursor, as: UInt32.self)
        cursor += 4 + (UInt32(littleEndian: text) == noText ? 0 : Int(UInt32(littleEndian: text)))
        let created = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: cursor, as: UInt16.self))
        cursor += 2 + (created == noCreatedText ? 0 : Int(created))
        return cursor - position
    }

    /// The messages, decoded.
    var messages: [Message] {
        body.withUnsafeBufferPointer { bytes in
            var messages: [Message] = []
            messages.reserveCapacity(count)
            var position = 0
            while position < bytes.count {
                let (message, next) = Self.message(in: bytes, at: position)
                messages.append(message)
                position = next
            }
            return messages
        }
    }

    /// Decodes the well-formed message at `position`; returns it and the position after it.
    private static func message(in bytes: UnsafeBufferPointer<UInt8>, at position: Int) -> (message: Message, next: Int) {
        let raw = UnsafeRawBufferPointer(bytes)
        var cursor = position
        func integer<T: FixedWidthInteger>(_: T.Type) -> T {
            defer { cursor += MemoryLayout<T>.size }
            return T(littleEndian: raw.loadUnaligned(fromByteOffset: cursor, as: T.self))
        }
        func string(length: Int) -> String {
            defer { cursor += length }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[cursor..<(cursor + length)]), as: UTF8.self)
        }
        let offset = integer(UInt64.self)
        let sent = integer(Int64.self)
        let created = integer(Int64.self)
        let edited = integer(Int64.self)
        let deleted = integer(Int64.self)
        let author = string(length: Int(integer(UInt16.self)))
        let client = string(length: Int(integer(UInt16.self)))
        let textLength = integer(UInt32.self)
        let text = textLength == noText ? nil : string(length: Int(textLength))
        let createdLength = integer(UInt16.self)
        let createdText = createdLength == noCreatedText ? nil : string(length: Int(createdLength))
        let message = Message(offset: offset, author: author, clientMessageID: client, text: text,
                              clientCreatedMs: created, sentMs: sent,
                              editedMs: edited == Int64.min ? nil : edited,
                              deletedMs: deleted == Int64.min ? nil : deleted,
                              clientCreatedText: createdText)
        return (message, cursor)
    }

    /// The block's bytes (FORMAT.md §10): its count, then its messages as they are held.
    func encoded() -> Data {
        var data = Data(capacity: 2 + body.count)
        withUnsafeBytes(of: UInt16(count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: body)
        return data
    }

    /// - Returns: nil when the bytes are not a block (the database is damaged: rebuild it):
    ///   a count over `capacity`, a length past the end, offsets not increasing, or bytes
    ///   after the last message.
    static func decode(_ bytes: Data?) -> HistoryBlock? {
        guard let bytes, bytes.count >= 2 else { return nil }
        return bytes.withUnsafeBytes { raw -> HistoryBlock? in
            let count = Int(UInt16(littleEndian: raw.loadUnaligned(as: UInt16.self)))
            guard count <= capacity else { return nil }
            let messages = UnsafeRawBufferPointer(rebasing: raw[2...])
            var block = HistoryBlock()
            var position = 0
            for _ in 0..<count {
                // Check every length against the end before `size` trusts them.
                var cursor = position + fixedBytes
                func field(lengthBytes width: Int, absent: Int? = nil) -> Bool {
                    guard cursor + width <= messages.count else { return false }
                    var length = 0
                    for byte in (0..<width).reversed() { length = length << 8 | Int(messages[cursor + byte]) }
                    if length == absent { length = 0 }
                    cursor += width + length
                    return cursor <= messages.count
                }
                guard field(lengthBytes: 2), field(lengthBytes: 2), field(lengthBytes: 4, absent: Int(noText)),
                      field(lengthBytes: 2, absent: Int(noCreatedText)) else { return nil }
                let offset = UInt64(littleEndian: messages.loadUnaligned(fromByteOffset: position, as: UInt64.self))
                guard block.lastOffset.map({ offset > $0 }) ?? true else { return nil }
                if block.firstOffset == nil { block.firstOffset = offset }
                block.lastOffset = offset
                block.count += 1
                position = cursor
            }
            guard position == messages.count else { return nil }
            block.body = Array(messages.assumingMemoryBound(to: UInt8.self))
            return block
        }
    }
}

extension HistoryBlock.Message {
    /// Calls `body` with the UTF-8 bytes of the author, the client message id, the text and
    /// the client's time text.
    func withFieldBytes<R>(
        _ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>?, UnsafeBufferPointer<UInt8>?) throws -> R
    ) rethrows -> R {
        // withUTF8 needs mutable strings: copies of the fields (no bytes are copied).
        var author = author
        var clientMessageID = clientMessageID
        return try author.withUTF8 { author in
            try clientMessageID.withUTF8 { clientMessageID in
                try Self.withOptionalUTF8(text) { text in
                    try Self.withOptionalUTF8(clientCreatedText) { try body(author, clientMessageID, text, $0) }
                }
            }
        }
    }

    private static func withOptionalUTF8<R>(_ string: String?, _ body: (UnsafeBufferPointer<UInt8>?) throws -> R) rethrows -> R {
        guard var string else { return try body(nil) }
        return try string.withUTF8 { try body($0) }
    }
}
