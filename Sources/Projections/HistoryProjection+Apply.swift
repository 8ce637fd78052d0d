import ChatModel
import Foundation
import GRDB
import Journal

/// Applying journal events: each call one transaction that moves the checkpoint with the
/// blocks it writes (FORMAT.md §10).
extension HistoryProjection {
    /// Applies the events of `batches` at or after the stored checkpoint, and moves the
    /// checkpoint to the end of the last batch, in one transaction. With `deferTails` (a
    /// catch-up: the projection is not being read), rooms' partly filled last blocks are written
    /// only once full, or by `writeDeferredTails()`, instead of once per transaction; the
    /// checkpoint then stays at the earliest change only memory holds.
    /// - Throws: `ProjectionError.malformedEvent` (nothing of this call is applied), `.database`.
    public func apply(_ batches: [RecordBatch], deferTails: Bool = false) throws(ProjectionError) {
        guard let end = batches.last?.nextOffset else { return }
        // Decoded one record at a time inside the transaction: no decoded copy of the read.
        try apply(end: end, deferTails: deferTails) { start, handle in
            for batch in batches where batch.nextOffset.value > start {
                for record in batch.records where record.offset.value >= start { try handle(record) }
            }
        }
    }

    /// Writes the tails that deferred transactions kept in memory, and moves the checkpoint to
    /// the end of the last of them. Nothing to do after a transaction that did not defer.
    public func writeDeferredTails() throws(ProjectionError) {
        guard let end = deferredEnd.withLock({ $0 }) else { return }
        try apply(end: end) { _, _ in }
    }

    /// The transaction: `records` calls its handler with each record at or after the stored
    /// checkpoint (given as its first argument), in offset order.
    private func apply(
        end: Offset,
        deferTails: Bool = false,
        records: (UInt64, (JournalRecord) throws -> Void) throws -> Void
    ) throws(ProjectionError) {
        var deleted = false
        var committed: (rooms: [String: Int64], tails: [Int64: Tail], deferred: Bool)?
        do {
            try database.write { db in
                let start = UInt64(try Int64.fetchOne(db, sql: "SELECT next_offset FROM checkpoint WHERE id = 1") ?? 0)
                guard end.value > start else { return }
                // Take the cached tails out, so that they are uniquely referenced while this
                // transaction appends to them; they go back only if it commits.
                let tails = tailCache.withLock { cache in
                    defer { cache = [:] }
                    return cache
                }
                var writer = BlockWriter(db: db, rooms: try self.roomIDs(db), tails: tails)
                try records(start) { record in
                    let offset = record.offset.value
                    // Messages (nearly every record) are copied from the record's bytes into
                    // their block without building strings; the rest are decoded.
                    let copied: Bool?
                    do {
                        copied = try ChatEventCodec.withMessageSent(record.payload) { message in
                            let room = String(decoding: message.room, as: UTF8.self)
                            let appended = try writer.append(room: room, offset: offset) { block in
                                block.append(offset: offset, sentMs: message.timestampMs, clientCreatedMs: message.clientCreatedMs,
                                             author: message.actor, clientMessageID: message.clientMessageID, text: message.text,
                                             clientCreatedText: message.clientCreatedText)
                            }
                            // Replies and mentions are rare: the common message writes nothing more.
                            if appended, message.replyTo != nil || Mentions.mayMention(message.text) {
                                try writer.annotate(room: room, offset: offset, author: String(decoding: message.actor, as: UTF8.self),
                                                    replyTo: message.replyTo, text: String(decoding: message.text, as: UTF8.self))
                            }
                            return true
                        }
                    } catch let error as ChatEventDecodingError {
                        throw ProjectionError.malformedEvent(offset: record.offset, error)
                    }
                    guard copied == nil, case .event(let event) = try ProjectionError.decode(record) else { return }
                    switch event.body {
                    case .messageSent(let clientMessageID, let text, let clientCreatedMs, let clientCreatedText, let replyTo):
                        let message = HistoryBlock.Message(
                            offset: offset, author: event.actor.value, clientMessageID: clientMessageID,
                            text: text, clientCreatedMs: clientCreatedMs, sentMs: event.timestampMs,
                            clientCreatedText: clientCreatedText)
                        if try writer.append(room: event.room.value, offset: offset, { $0.append(message) }) {
                            try writer.annotate(room: event.room.value, offset: offset, author: event.actor.value,
                                                replyTo: replyTo?.offset, text: text)
                        }
                    case .messageEdited(let message, let text):
                        var replaced: String?
                        try writer.update(room: event.room.value, offset: message.offset, event: offset) { message in
                            guard message.deletedMs == nil else { return }
                            replaced = message.text
                            message.text = text
                            message.editedMs = event.timestampMs
                        }
                        if let replaced {
                            try writer.mentionsChanged(room: event.room.value, offset: message.offset, author: event.actor.value, text: text)
                            try writer.recordReplaced(event: offset, text: replaced)
                        }
                    case .messageDeleted(let message):
                        deleted = true
                        var replaced: String?
                        try writer.update(room: event.room.value, offset: message.offset, event: offset) { message in
                            replaced = message.text
                            message.text = nil
                            message.deletedMs = event.timestampMs
                        }
                        try writer.forget(room: event.room.value, offset: message.offset)
                        if let replaced { try writer.recordReplaced(event: offset, text: replaced) }
                    case .reactionAdded(let message, let emoji):
                        try writer.react(room: event.room.value, offset: message.offset, emoji: emoji, user: event.actor.value, adding: true)
                    case .reactionRemoved(let message, let emoji):
                        try writer.react(room: event.room.value, offset: message.offset, emoji: emoji, user: event.actor.value, adding: false)
                    case .roomCreated, .memberInvited, .invitationRevoked, .memberJoined, .memberLeft, .memberRemoved, .tokensRevoked,
                         .directRoomCreated, .readMarked:
                        break
                    }
                }
                // Deferring keeps the changed tails in memory (they stay in the tail cache) and
                // leaves the checkpoint at the earliest change they hold, so that a crash
                // replays from there; appends at or below a room's last offset are skipped,
                // which makes that replay add nothing twice.
                var checkpoint = end.value
                if deferTails && writer.slots.count <= Self.tailCacheRoomsMax {
                    checkpoint = min(end.value, writer.earliestUnwrittenChange ?? end.value)
                } else {
                    try writer.flush()
                }
                try db.execute(sql: "UPDATE checkpoint SET next_offset = ? WHERE id = 1", arguments: [Int64(checkpoint)])
                committed = (writer.rooms, writer.tails, checkpoint < end.value)
            }
            // Only once the transaction has committed do the caches learn what it wrote.
            if let committed {
                roomCache.withLock { $0 = committed.rooms }
                tailCache.withLock { $0 = committed.tails.count <= Self.tailCacheRoomsMax ? committed.tails : [:] }
                deferredEnd.withLock { $0 = committed.deferred ? end : nil }
            }
            if deleted { needsErasure.withLock { $0 = true } }
        } catch let error as ProjectionError {
            forgetUncommitted()
            throw error
        } catch {
            forgetUncommitted()
            throw .database("applying events up to offset \(end): \(error)")
        }
    }

    /// After a failed transaction: what only memory held is gone; the stored checkpoint
    /// (which a deferred tail kept at or before its first change) is where to resume.
    private func forgetUncommitted() {
        tailCache.withLock { $0 = [:] }
        deferredEnd.withLock { $0 = nil }
    }

    /// Rooms whose last, partly filled block is kept in memory between transactions.
    static let tailCacheRoomsMax = 4096

    /// Accumulates one transaction's block changes: each room's last block stays in memory and
    /// is written once, when full or at `flush`.
    private struct BlockWriter {
        let db: Database
        var rooms: [String: Int64]
        /// Each room's open block, in an array indexed through `slots`, so that appends mutate
        /// the block in place (a dictionary's optional subscript copied it here).
        var slots: [Int64: Int] = [:]
        var blocks: [HistoryBlock] = []
        var roomOfSlot: [Int64] = []
        /// Per slot: the offset of the first event that changed the block since it was last
        /// written, or nil when the database has it as it is.
        var changedSince: [UInt64?] = []
        /// Per slot: the room's last message offset, written or not. Appends at or below it
        /// are replays (after a checkpoint that lagged) and are skipped.
        var lastOffsets: [UInt64?] = []
        init(db: Database, rooms: [String: Int64], tails: [Int64: Tail]) {
            self.db = db
            self.rooms = rooms
            for (room, tail) in tails { add(room: room, block: tail.block, changedSince: tail.changedSince) }
        }

        private mutating func add(room: Int64, block: HistoryBlock, changedSince: UInt64?) {
            slots[room] = blocks.count
            blocks.append(block)
            roomOfSlot.append(room)
            self.changedSince.append(changedSince)
            lastOffsets.append(block.lastOffset)
        }

        var tails: [Int64: Tail] {
            var tails: [Int64: Tail] = [:]
            for (room, slot) in slots { tails[room] = Tail(block: blocks[slot], changedSince: changedSince[slot]) }
            return tails
        }

        /// The earliest offset of a change that only memory holds, if any.
        var earliestUnwrittenChange: UInt64? { changedSince.compactMap { $0 }.min() }

        mutating func roomID(_ name: String, create: Bool) throws -> Int64? {
            if let id = rooms[name] { return id }
            guard create else { return nil }
            try db.cachedStatement(sql: "INSERT INTO rooms (name) VALUES (?)").execute(arguments: [name])
            let id = db.lastInsertedRowID
            rooms[name] = id
            return id
        }

        /// The slot of the room's open block, read from the database the first time.
        mutating func slot(of room: Int64) throws -> Int {
            if let slot = slots[room] { return slot }
            var block = HistoryBlock()
            if let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT data FROM blocks WHERE room_id = ? ORDER BY first_offset DESC LIMIT 1"),
                arguments: [room]) {
                guard let stored = HistoryBlock.decode(row["data"] as Data?) else {
                    throw ProjectionError.database("a history block of room \(room) is damaged; rebuild the projection")
                }
                block = stored
            }
            add(room: room, block: block, changedSince: nil)
            return blocks.count - 1
        }

        /// Appends the message at `offset` to its room's open block: `append` adds it. False
        /// when it is a replay of a message the room has already (then nothing is done).
        @discardableResult
        mutating func append(room name: String, offset: UInt64, _ append: (inout HistoryBlock) -> Void) throws -> Bool {
            guard let room = try roomID(name, create: true) else { return false }
            let slot = try slot(of: room)
            if let last = lastOffsets[slot], offset <= last { return false }
            if blocks[slot].isFull {
                if changedSince[slot] != nil { try write(blocks[slot], room: room) }
                blocks[slot] = HistoryBlock()
                changedSince[slot] = nil
            }
            append(&blocks[slot])
            lastOffsets[slot] = offset
            if changedSince[slot] == nil { changedSince[slot] = offset }
            return true
        }

        /// What a new message carries besides its block: the message it replies to, and the
        /// users it mentions (not its author).
        mutating func annotate(room name: String, offset: UInt64, author: String, replyTo: UInt64?, text: String) throws {
            guard let room = try roomID(name, create: false) else { return }
            if let replyTo {
                try db.cachedStatement(sql: "INSERT OR REPLACE INTO replies (room_id, offset, reply_to) VALUES (?, ?, ?)")
                    .execute(arguments: [room, Int64(offset), Int64(replyTo)])
            }
            try HistoryProjection.insertMentions(db, room: room, offset: offset, author: author, text: text)
        }

        /// An edit: the message mentions whom its new text mentions.
        mutating func mentionsChanged(room name: String, offset: UInt64, author: String, text: String) throws {
            guard let room = try roomID(name, create: false) else { return }
            try db.cachedStatement(sql: "DELETE FROM mentions WHERE room_id = ? AND offset = ?").execute(arguments: [room, Int64(offset)])
            try HistoryProjection.insertMentions(db, room: room, offset: offset, author: author, text: text)
        }

        /// The text an edit or a deletion at `event` replaced, for the search index (FORMAT.md
        /// §10). A replay keeps the first record: the transaction that made it saw the text as
        /// it was.
        func recordReplaced(event: UInt64, text: String) throws {
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO replaced (event, text) VALUES (?, ?)").execute(arguments: [Int64(event), text])
        }

        /// A deletion: the message's mentions and reactions go with its text.
        mutating func forget(room name: String, offset: UInt64) throws {
            guard let room = try roomID(name, create: false) else { return }
            try db.cachedStatement(sql: "DELETE FROM mentions WHERE room_id = ? AND offset = ?").execute(arguments: [room, Int64(offset)])
            try db.cachedStatement(sql: "DELETE FROM reactions WHERE room_id = ? AND offset = ?").execute(arguments: [room, Int64(offset)])
        }

        mutating func react(room name: String, offset: UInt64, emoji: String, user: String, adding: Bool) throws {
            guard let room = try roomID(name, create: false) else { return }
            if adding {
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO reactions (room_id, offset, emoji, user) VALUES (?, ?, ?, ?)")
                    .execute(arguments: [room, Int64(offset), emoji, user])
            } else {
                try db.cachedStatement(sql: "DELETE FROM reactions WHERE room_id = ? AND offset = ? AND emoji = ? AND user = ?")
                    .execute(arguments: [room, Int64(offset), emoji, user])
            }
        }

        /// Changes the message at `offset` for the event at `eventOffset`.
        mutating func update(room name: String, offset: UInt64, event eventOffset: UInt64,
                             _ change: (inout HistoryBlock.Message) -> Void) throws {
            guard let room = try roomID(name, create: false) else { return }
            let slot = try slot(of: room)
            if blocks[slot].update(offset: offset, change) {
                if changedSince[slot] == nil { changedSince[slot] = eventOffset }
                return
            }
            guard let row = try Row.fetchOne(db, sql: """
                SELECT data FROM blocks WHERE room_id = ? AND first_offset <= ? ORDER BY first_offset DESC LIMIT 1
                """, arguments: [room, Int64(offset)]),
                var stored = HistoryBlock.decode(row["data"] as Data?),
                stored.update(offset: offset, change)
            else { return }
            try write(stored, room: room)
        }

        func write(_ block: HistoryBlock, room: Int64) throws {
            guard let first = block.firstOffset, let last = block.lastOffset else { return }
            try db.cachedStatement(sql: """
                INSERT INTO blocks (room_id, first_offset, last_offset, count, data) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (room_id, first_offset) DO UPDATE SET last_offset = excluded.last_offset,
                    count = excluded.count, data = excluded.data
                """).execute(arguments: [room, Int64(first), Int64(last), block.count, block.encoded()])
        }

        /// Writes every changed tail.
        mutating func flush() throws {
            for slot in changedSince.indices where changedSince[slot] != nil {
                try write(blocks[slot], room: roomOfSlot[slot])
                changedSince[slot] = nil
            }
        }
    }

    /// Records whom `text` (of the message at `offset`, by `author`) mentions.
    static func insertMentions(_ db: Database, room: Int64, offset: UInt64, author: String, text: String) throws {
        for user in Mentions.names(in: text) where user.value != author {
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO mentions (user, room_id, offset) VALUES (?, ?, ?)")
                .execute(arguments: [user.value, room, Int64(offset)])
        }
    }

    /// Layout 3 to 4: the mentions of the messages already stored.
    static func indexMentions(_ db: Database) throws {
        let rows = try Row.fetchCursor(db, sql: "SELECT room_id, data FROM blocks")
        while let row = try rows.next() {
            guard let block = HistoryBlock.decode(row["data"] as Data?) else { throw ProjectionError.database("a history block is damaged; rebuild the projection") }
            let room: Int64 = row["room_id"]
            for message in block.messages {
                if let text = message.text, text.utf8.contains(UInt8(ascii: "@")) {
                    try insertMentions(db, room: room, offset: message.offset, author: message.author, text: text)
                }
            }
        }
    }

    /// The committed room ids, loaded once.
    private func roomIDs(_ db: Database) throws -> [String: Int64] {
        if let cached = roomCache.withLock({ $0 }) { return cached }
        var ids: [String: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, name FROM rooms") { ids[row[1]] = row[0] }
        return ids
    }
}
