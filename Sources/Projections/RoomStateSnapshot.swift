import ChatModel
import Journal
import NIOCore

/// The room-state snapshot file: the state and the offset it covers, so that start-up replays
/// only the journal's tail. FORMAT.md ("Room-state snapshot") draws it. Stateless.
///
/// Derived data: a snapshot that is missing, damaged, of another version or made with other
/// limits is not used (the caller replays the journal from offset 0 instead).
public enum RoomStateSnapshot {
    static let magic: UInt32 = 0x534C_4843  // "CHLS"
    static let version: UInt16 = 5
    /// Versions this build reads: 3 is 4 without the revoked tokens (no tokens revoked then);
    /// 4 is 5 without direct rooms, read markers and reactions (there were none then).
    static let versionsRead: ClosedRange<UInt16> = 3...5
    static let headerBytes = 28

    /// Encodes `state`, which reflects every event below `nextOffset`.
    public static func encode(_ state: RoomState, nextOffset: Offset) -> ByteBuffer {
        var payload = ByteBufferAllocator().buffer(capacity: 4096)
        func short(_ string: String) {
            payload.writeInteger(UInt16(string.utf8.count), endianness: .little)
            payload.writeString(string)
        }
        func count(_ value: Int) { payload.writeInteger(UInt32(value), endianness: .little) }
        let limits = state.limits
        for value in [limits.messageBytesMax, limits.roomNameBytesMax, limits.clientMessageIDBytesMax,
                      limits.clientMessageIDWindow, limits.editableMessagesPerRoom, limits.clientIDSendersPerRoomMax] {
            count(value)
        }
        count(state.users.count)
        for user in state.users { short(user.value) }
        count(state.roomCount)
        // Sorted, so that equal states give equal bytes.
        for (id, room) in state.rooms.sorted(by: { $0.key < $1.key }) {
            short(id.value)
            short(room.name)
            short(room.owner.value)
            payload.writeInteger(UInt8(room.isPrivate ? 1 : 0))
            payload.writeInteger(room.createdMs, endianness: .little)
            count(room.members.count)
            for member in room.members.sorted() { short(member.value) }
            count(room.invited.count)
            for invited in room.invited.sorted() { short(invited.value) }
            count(room.recentMessages.count)
            for message in room.recentMessages {
                payload.writeInteger(message.id.offset, endianness: .little)
                payload.writeInteger(message.author.index, endianness: .little)
                payload.writeInteger(UInt8(message.deleted ? 1 : 0))
            }
            count(room.recentClientIDs.count)
            for (user, ids) in room.recentClientIDs.sorted(by: { $0.key < $1.key }) {
                payload.writeInteger(user.index, endianness: .little)
                count(ids.count)
                for entry in ids {
                    short(entry.clientMessageID)
                    payload.writeInteger(entry.message.offset, endianness: .little)
                }
            }
            // Version 5: the direct room's peer (empty: none), read markers, reactions.
            short(room.directPeer?.value ?? "")
            count(room.readMarkers.count)
            for (user, message) in room.readMarkers.sorted(by: { $0.key < $1.key }) {
                short(user.value)
                payload.writeInteger(message.offset, endianness: .little)
            }
            count(room.reactions.count)
            for (message, reactions) in room.reactions.sorted(by: { $0.key < $1.key }) {
                payload.writeInteger(message.offset, endianness: .little)
                count(reactions.count)
                for reaction in reactions {
                    short(reaction.emoji)
                    count(reaction.users.count)
                    for user in reaction.users { short(user.value) }
                }
            }
        }
        // Version 4: the tokens revoked, by user (sorted).
        count(state.tokensRevokedBefore.count)
        for (user, before) in state.tokensRevokedBefore.sorted(by: { $0.key < $1.key }) {
            short(user.value)
            payload.writeInteger(before, endianness: .little)
        }
        var file = ByteBufferAllocator().buffer(capacity: headerBytes + payload.readableBytes)
        file.writeInteger(magic, endianness: .little)
        file.writeInteger(version, endianness: .little)
        file.writeInteger(UInt16(0), endianness: .little)
        file.writeInteger(nextOffset.value, endianness: .little)
        file.writeInteger(UInt64(payload.readableBytes), endianness: .little)
        file.writeInteger(checksum(header: file, payload: payload), endianness: .little)
        file.writeImmutableBuffer(payload)
        return file
    }

    /// The CRC-32C of the header's first 24 bytes (magic to payload length) followed by the
    /// payload: a damaged offset or length is caught too (version 2 covered the payload only).
    static func checksum(header: ByteBuffer, payload: ByteBuffer) -> UInt32 {
        guard let covered = header.getSlice(at: header.readerIndex, length: 24) else { return 0 }
        return CRC32C.checksum(readableBytesOf: payload, continuing: CRC32C.checksum(readableBytesOf: covered))
    }

    /// The offset a snapshot covers (every event below it is in its state), after checking
    /// its header and CRC-32C but not decoding its state (so whatever limits it was made with).
    /// - Throws: `SnapshotError` when it is damaged or of another version.
    public static func coveredOffset(_ bytes: ByteBuffer) throws(SnapshotError) -> Offset {
        var file = bytes
        return try checkedHeader(&file)
    }

    /// Decodes a snapshot made with `limits`.
    /// - Returns: the state and the offset it covers.
    /// - Throws: `SnapshotError` saying what is wrong (damaged, other version, other limits).
    public static func decode(_ bytes: ByteBuffer, limits: ChatLimits) throws(SnapshotError) -> (RoomState, Offset) {
        var file = bytes
        let (next, fileVersion) = try checkedHeaderAndVersion(&file)
        return try decodePayload(&file, next: next, version: fileVersion, limits: limits)
    }

    /// Reads and checks the header and the CRC, leaving `file` at the payload; returns the
    /// offset covered.
    private static func checkedHeader(_ file: inout ByteBuffer) throws(SnapshotError) -> Offset {
        try checkedHeaderAndVersion(&file).next
    }

    private static func checkedHeaderAndVersion(_ file: inout ByteBuffer) throws(SnapshotError) -> (next: Offset, version: UInt16) {
        let bytes = file
        guard file.readableBytes >= headerBytes,
              let fileMagic = file.readInteger(endianness: .little, as: UInt32.self),
              let fileVersion = file.readInteger(endianness: .little, as: UInt16.self),
              let _ = file.readInteger(endianness: .little, as: UInt16.self),
              let next = file.readInteger(endianness: .little, as: UInt64.self),
              let length = file.readInteger(endianness: .little, as: UInt64.self),
              let crc = file.readInteger(endianness: .little, as: UInt32.self)
        else { throw SnapshotError("shorter than its \(headerBytes)-byte header") }
        guard fileMagic == magic else { throw SnapshotError("bad magic 0x\(String(fileMagic, radix: 16))") }
        guard versionsRead.contains(fileVersion) else {
            throw SnapshotError("version \(fileVersion), this build reads \(versionsRead.lowerBound) to \(versionsRead.upperBound)")
        }
        guard length == UInt64(file.readableBytes) else {
            throw SnapshotError("payload is \(file.readableBytes) bytes, header says \(length)")
        }
        let computed = checksum(header: bytes, payload: file)
        guard computed == crc else { throw SnapshotError("CRC-32C mismatch: stored 0x\(String(crc, radix: 16)), computed 0x\(String(computed, radix: 16))") }
        return (Offset(next), fileVersion)
    }

    private static func decodePayload(_ file: inout ByteBuffer, next nextOffset: Offset, version fileVersion: UInt16,
                                      limits: ChatLimits) throws(SnapshotError) -> (RoomState, Offset) {
        func integer<T: FixedWidthInteger>(_: T.Type) throws(SnapshotError) -> T {
            guard let value = file.readInteger(endianness: .little, as: T.self) else { throw SnapshotError("payload ends early") }
            return value
        }
        func short() throws(SnapshotError) -> String {
            let length = Int(try integer(UInt16.self))
            guard let string = file.readString(length: length) else { throw SnapshotError("payload ends inside a string") }
            return string
        }
        func user() throws(SnapshotError) -> UserID {
            let value = try short()
            guard let id = UserID(value) else { throw SnapshotError("invalid user id \(value.debugDescription)") }
            return id
        }
        func count() throws(SnapshotError) -> Int {
            let value = Int(try integer(UInt32.self))
            // Every counted item takes at least one byte: a larger count is damage.
            guard value <= file.readableBytes else { throw SnapshotError("count \(value) exceeds the bytes left") }
            return value
        }
        // The limits are values, not counts of items that follow.
        var stored: [Int] = []
        for _ in 0..<6 { stored.append(Int(try integer(UInt32.self))) }
        let configured = [limits.messageBytesMax, limits.roomNameBytesMax, limits.clientMessageIDBytesMax,
                          limits.clientMessageIDWindow, limits.editableMessagesPerRoom, limits.clientIDSendersPerRoomMax]
        guard stored == configured else { throw SnapshotError("made with other chat limits \(stored), configured \(configured)") }
        var users: [UserID] = []
        for _ in 0..<(try count()) { users.append(try user()) }
        func author() throws(SnapshotError) -> RoomState.UserRef {
            let index = try integer(UInt32.self)
            guard Int(index) < users.count else { throw SnapshotError("author \(index) is not among \(users.count) users") }
            return RoomState.UserRef(index)
        }
        var rooms: [RoomID: RoomState.Room] = [:]
        for _ in 0..<(try count()) {
            let idValue = try short()
            guard let id = RoomID(idValue) else { throw SnapshotError("invalid room id \(idValue.debugDescription)") }
            let name = try short()
            let owner = try user()
            let isPrivate = try integer(UInt8.self) == 1
            var room = RoomState.Room(name: name, owner: owner, isPrivate: isPrivate,
                                      createdMs: try integer(Int64.self), limits: limits)
            room.members = []
            for _ in 0..<(try count()) { room.members.insert(try user()) }
            for _ in 0..<(try count()) { room.invited.insert(try user()) }
            for _ in 0..<(try count()) {
                let id = MessageID(try integer(UInt64.self))
                room.recentMessages.append(RoomState.MessageMeta(id: id, author: try author(), deleted: try integer(UInt8.self) == 1))
            }
            for _ in 0..<(try count()) {
                let sender = try author()
                var ring = BoundedRing<RoomState.ClientMessage>(capacity: limits.clientMessageIDWindow)
                for _ in 0..<(try count()) {
                    let clientMessageID = try short()
                    ring.append(RoomState.ClientMessage(clientMessageID: clientMessageID, message: MessageID(try integer(UInt64.self))))
                }
                room.recentClientIDs.updateValue(ring, forKey: sender)
            }
            if fileVersion >= 5 {
                let peer = try short()
                if !peer.isEmpty {
                    guard let peer = UserID(peer) else { throw SnapshotError("invalid direct peer \(peer.debugDescription)") }
                    room.directPeer = peer
                }
                for _ in 0..<(try count()) {
                    let user = try user()
                    room.readMarkers[user] = MessageID(try integer(UInt64.self))
                }
                for _ in 0..<(try count()) {
                    let message = MessageID(try integer(UInt64.self))
                    var reactions: [RoomState.Reaction] = []
                    for _ in 0..<(try count()) {
                        let emoji = try short()
                        var users: [UserID] = []
                        for _ in 0..<(try count()) { users.append(try user()) }
                        reactions.append(RoomState.Reaction(emoji: emoji, users: users))
                    }
                    room.reactions[message] = reactions
                }
            }
            rooms[id] = room
        }
        var revoked: [UserID: Int64] = [:]
        if fileVersion >= 4 {
            for _ in 0..<(try count()) {
                let user = try user()
                revoked[user] = try integer(Int64.self)
            }
        }
        guard file.readableBytes == 0 else { throw SnapshotError("\(file.readableBytes) bytes after the last room") }
        return (RoomState(limits: limits, users: users, rooms: rooms, tokensRevokedBefore: revoked), nextOffset)
    }
}

/// Why a snapshot was not used.
public struct SnapshotError: Error, Sendable, CustomStringConvertible {
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    public var description: String { "unusable room-state snapshot: \(message)" }
}
