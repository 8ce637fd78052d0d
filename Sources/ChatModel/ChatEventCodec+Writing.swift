import NIOCore

extension ChatEventCodec {
    /// What a record's layout is written to: one walk of the event (`write(_:to:)`) either
    /// counts its bytes or writes them, so the layout is described once (FORMAT.md, "Chat
    /// events").
    protocol FieldSink {
        mutating func byte(_ value: UInt8)
        mutating func u16(_ value: UInt16)
        mutating func u32(_ value: UInt32)
        mutating func u64(_ value: UInt64)
        mutating func utf8(_ string: String, count: Int)
    }

    /// Counts a record's bytes.
    struct SizeCounter: FieldSink {
        var bytes = 0
        mutating func byte(_ value: UInt8) { bytes += 1 }
        mutating func u16(_ value: UInt16) { bytes += 2 }
        mutating func u32(_ value: UInt32) { bytes += 4 }
        mutating func u64(_ value: UInt64) { bytes += 8 }
        mutating func utf8(_ string: String, count: Int) { bytes += count }
    }

    /// Writes a record into memory that `SizeCounter` measured: little-endian integers, string
    /// bytes copied whole.
    struct RawWriter: FieldSink {
        let base: UnsafeMutableRawPointer
        var offset = 0

        mutating func byte(_ value: UInt8) {
            base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
        mutating func u16(_ value: UInt16) {
            base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
            offset += 2
        }
        mutating func u32(_ value: UInt32) {
            base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
            offset += 4
        }
        mutating func u64(_ value: UInt64) {
            base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        mutating func utf8(_ string: String, count: Int) {
            let target = base + offset
            let copied: Void? = string.utf8.withContiguousStorageIfAvailable { bytes in
                if let source = bytes.baseAddress { target.copyMemory(from: source, byteCount: bytes.count) }
            }
            if copied == nil {
                for (index, byte) in string.utf8.enumerated() { target.storeBytes(of: byte, toByteOffset: index, as: UInt8.self) }
            }
            offset += count
        }
    }

    /// The record of `event`, field by field, to `sink`.
    static func write<Sink: FieldSink>(_ event: ChatEvent, to sink: inout Sink) {
        func short(_ string: String) {
            let count = string.utf8.count
            precondition(count <= shortStringBytesLimit, "string of \(count) bytes exceeds \(shortStringBytesLimit); validate before encoding")
            sink.u16(UInt16(count))
            sink.utf8(string, count: count)
        }
        func long(_ string: String) {
            let count = string.utf8.count
            precondition(count <= textBytesLimit, "text of \(count) bytes exceeds \(textBytesLimit); validate before encoding")
            sink.u32(UInt32(count))
            sink.utf8(string, count: count)
        }
        sink.byte(version)
        sink.byte(eventType(of: event).rawValue)
        sink.u64(UInt64(bitPattern: event.timestampMs))
        short(event.actor.value)
        short(event.room.value)
        switch event.body {
        case .roomCreated(let name, let isPrivate):
            short(name)
            sink.byte(isPrivate ? 1 : 0)
        case .memberInvited(let user), .invitationRevoked(let user), .memberRemoved(let user):
            short(user.value)
        case .memberJoined, .memberLeft:
            break
        case .messageSent(let clientMessageID, let text, let clientCreatedMs, let clientCreatedText, let replyTo):
            short(clientMessageID)
            sink.u64(UInt64(bitPattern: clientCreatedMs))
            long(text)
            // Optional trailing fields (FORMAT.md §8): readers that predate them ignore them.
            // The client time text is written empty (length 0: none) when only a reply follows.
            if clientCreatedText != nil || replyTo != nil { short(clientCreatedText ?? "") }
            if let replyTo { sink.u64(replyTo.offset) }
        case .messageEdited(let message, let text):
            sink.u64(message.offset)
            long(text)
        case .messageDeleted(let message), .readMarked(let message):
            sink.u64(message.offset)
        case .tokensRevoked(let beforeMs):
            sink.u64(UInt64(bitPattern: beforeMs))
        case .directRoomCreated(let peer):
            short(peer.value)
        case .reactionAdded(let message, let emoji), .reactionRemoved(let message, let emoji):
            sink.u64(message.offset)
            short(emoji)
        }
    }

    static func eventType(of event: ChatEvent) -> EventType {
        switch event.body {
        case .roomCreated: .roomCreated
        case .memberInvited: .memberInvited
        case .invitationRevoked: .invitationRevoked
        case .memberJoined: .memberJoined
        case .memberLeft: .memberLeft
        case .memberRemoved: .memberRemoved
        case .messageSent: .messageSent
        case .messageEdited: .messageEdited
        case .messageDeleted: .messageDeleted
        case .tokensRevoked: .tokensRevoked
        case .directRoomCreated: .directRoomCreated
        case .reactionAdded: .reactionAdded
        case .reactionRemoved: .reactionRemoved
        case .readMarked: .readMarked
        }
    }

    /// The bytes `event`'s record takes.
    public static func encodedBytes(_ event: ChatEvent) -> Int {
        var counter = SizeCounter()
        write(event, to: &counter)
        return counter.bytes
    }
}
