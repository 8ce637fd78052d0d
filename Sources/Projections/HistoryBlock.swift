import Foundation
import NIOCore

/// Up to `capacity` consecutive messages of one room, stored as one row of the History
/// database. FORMAT.md §10 draws the encoding. A value type.
///
/// Storing messages in blocks makes a rebuild write one row per block instead of one per
/// message, which is what SQLite's per-row cost limits.
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

        func history(room: String) -> HistoryMessage {
            HistoryMessage(offset: offset, room: room, author: author, clientMessageID: clientMessageID, text: text,
                           clientCreatedMs: clientCreatedMs, sentMs: sentMs, editedMs: editedMs, deletedMs: deletedMs)
        }
    }

    var messages: [Message] = []

    var firstOffset: UInt64? { messages.first?.offset }
    var lastOffset: UInt64? { messages.last?.offset }
    var isFull: Bool { messages.count >= Self.capacity }

    func index(of offset: UInt64) -> Int? {
        var low = 0
        var high = messages.count
        while low < high {
            let mid = (low + high) / 2
            if messages[mid].offset == offset { return mid }
            if messages[mid].offset < offset { low = mid + 1 } else { high = mid }
        }
        return nil
    }

    /// The block's bytes (FORMAT.md §10), written once into a buffer of their exact size.
    func encoded() -> Data {
        var size = 2
        for message in messages {
            size += 5 * 8 + 2 + message.author.utf8.count + 2 + message.clientMessageID.utf8.count + 4
                + (message.text?.utf8.count ?? 0)
        }
        var data = Data(count: size)
        data.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
            var position = 0
            func integer<T: FixedWidthInteger>(_ value: T) {
                raw.storeBytes(of: value.littleEndian, toByteOffset: position, as: T.self)
                position += MemoryLayout<T>.size
            }
            func bytes(_ string: String) {
                var string = string
                string.withUTF8 { utf8 in
                    UnsafeMutableRawBufferPointer(rebasing: raw[position..<(position + utf8.count)]).copyMemory(from: UnsafeRawBufferPointer(utf8))
                    position += utf8.count
                }
            }
            integer(UInt16(messages.count))
            for message in messages {
                integer(message.offset)
                integer(message.sentMs)
                integer(message.clientCreatedMs)
                integer(message.editedMs ?? Int64.min)
                integer(message.deletedMs ?? Int64.min)
                integer(UInt16(message.author.utf8.count))
                bytes(message.author)
                integer(UInt16(message.clientMessageID.utf8.count))
                bytes(message.clientMessageID)
                if let text = message.text {
                    integer(UInt32(text.utf8.count))
                    bytes(text)
                } else {
                    integer(UInt32.max)
                }
            }
            precondition(position == size, "a history block's size was miscounted")
        }
        return data
    }

    /// - Returns: nil when the bytes are not a block (the database is damaged: rebuild it).
    static func decode(_ bytes: Data?) -> HistoryBlock? {
        guard let bytes else { return nil }
        var buffer = ByteBuffer(bytes: bytes)
        guard let count = buffer.readInteger(endianness: .little, as: UInt16.self), Int(count) <= capacity else { return nil }
        var block = HistoryBlock()
        block.messages.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let offset = buffer.readInteger(endianness: .little, as: UInt64.self),
                  let sent = buffer.readInteger(endianness: .little, as: Int64.self),
                  let created = buffer.readInteger(endianness: .little, as: Int64.self),
                  let edited = buffer.readInteger(endianness: .little, as: Int64.self),
                  let deleted = buffer.readInteger(endianness: .little, as: Int64.self),
                  let authorLength = buffer.readInteger(endianness: .little, as: UInt16.self),
                  let author = buffer.readString(length: Int(authorLength)),
                  let clientLength = buffer.readInteger(endianness: .little, as: UInt16.self),
                  let client = buffer.readString(length: Int(clientLength)),
                  let textLength = buffer.readInteger(endianness: .little, as: UInt32.self)
            else { return nil }
            var text: String?
            if textLength != UInt32.max {
                guard let value = buffer.readString(length: Int(textLength)) else { return nil }
                text = value
            }
            block.messages.append(Message(offset: offset, author: author, clientMessageID: client, text: text,
                                          clientCreatedMs: created, sentMs: sent,
                                          editedMs: edited == Int64.min ? nil : edited,
                                          deletedMs: deleted == Int64.min ? nil : deleted))
        }
        guard buffer.readableBytes == 0 else { return nil }
        return block
    }
}
