import ChatModel
import Foundation
import GRDB
import Journal
import Logging
import NIOCore
import Synchronization

/// One message as scroll-back shows it.
public struct HistoryMessage: Sendable, Equatable, Codable {
    /// The message id: the journal offset of its `messageSent` event.
    public var offset: UInt64
    public var room: String
    public var author: String
    public var clientMessageID: String
    /// nil once the message was deleted: the text is gone from the projection.
    public var text: String?
    public var clientCreatedMs: Int64
    public var sentMs: Int64
    public var editedMs: Int64?
    public var deletedMs: Int64?
    /// The client's time as the text it sent (an ISO-8601 string), when it sent text.
    public var clientCreatedText: String?

    public init(offset: UInt64, room: String, author: String, clientMessageID: String, text: String?, clientCreatedMs: Int64,
                sentMs: Int64, editedMs: Int64? = nil, deletedMs: Int64? = nil, clientCreatedText: String? = nil) {
        self.offset = offset
        self.room = room
        self.author = author
        self.clientMessageID = clientMessageID
        self.text = text
        self.clientCreatedMs = clientCreatedMs
        self.sentMs = sentMs
        self.editedMs = editedMs
        self.deletedMs = deletedMs
        self.clientCreatedText = clientCreatedText
    }
}

/// Message history per room for scroll-back, in SQLite through GRDB: a projection of the
/// journal's message events (sent, edited, deleted).
///
/// Messages are stored in blocks of up to 64 consecutive messages of a room (`HistoryBlock`).
/// A deleted message's text is erased, not hidden: its block is rewritten without it with
/// SQLite's `secure_delete` on, and `eraseDeletedText()` checkpoints and truncates the write-ahead log,
/// which still holds the old page.
///
/// Each application of events runs in one transaction that also stores the offset up to
/// which events are applied, so after a crash it resumes exactly where its last transaction
/// ended: no duplicate, no missing row. Thread-safe (GRDB's `DatabaseQueue` serializes
/// access); one writer at a time is expected (the projection runner).
public final class HistoryProjection: Sendable {
    /// Most messages one page query returns.
    public static let pageLimitMax = 200
    /// The layout of the database (FORMAT.md §10), kept in SQLite's `user_version`. A file of
    /// another layout is derived data of an older build: it is emptied and rebuilt.
    public static let layoutVersion = 3

    public let path: String
    let database: DatabaseQueue
    /// Set when a transaction deleted text that the WAL may still hold.
    private let needsErasure = Mutex(false)
    /// Room name -> rooms.id, as committed; nil until first loaded.
    private let roomCache = Mutex<[String: Int64]?>(nil)
    /// Each room's last block as committed, so appends need not read it back.
    private let tailCache = Mutex<[Int64: Tail]>([:])
    /// The end of the last transaction, when its checkpoint lags behind it because tails were
    /// deferred (`apply(_:deferTails:)`); `writeDeferredTails()` catches the checkpoint up.
    private let deferredEnd = Mutex<Offset?>(nil)

    /// A room's last, partly filled block as this process holds it, and the offset of the
    /// first event that changed it since it was last written (nil: the database has it).
    struct Tail: Sendable {
        var block: HistoryBlock
        var changedSince: UInt64?
    }

    /// The committed room ids, loaded once.
    private func roomIDs(_ db: Database) throws -> [String: Int64] {
        if let cached = roomCache.withLock({ $0 }) { return cached }
        var ids: [String: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, name FROM rooms") { ids[row[1]] = row[0] }
        return ids
    }

    /// Opens (creating if needed) the history database at `path`.
    /// - Throws: `ProjectionError.database`.
    public init(path: String) throws(ProjectionError) {
        self.path = path
        do {
            var configuration = Configuration()
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                // Derived data: a power cut may lose the last transactions, never consistency,
                // and the checkpoint rolls back with them.
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
                // A deleted message's text must be gone from the file, not left in a free page.
                try db.execute(sql: "PRAGMA secure_delete = ON")
                // 64 MiB of page cache: inserts into the per-room index stay in memory during a
                // rebuild. A fixed bound: History's memory does not grow with the journal.
                try db.execute(sql: "PRAGMA cache_size = -65536")
                // Fewer, larger checkpoints (each fsyncs): about 40 MB of WAL between them
                // during a catch-up or rebuild; a live server checkpoints sooner
                // (`boundWriteAheadLog()`).
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 10000")
                // A checkpoint that empties the WAL also shrinks its file to this size.
                try db.execute(sql: "PRAGMA journal_size_limit = \(Self.writeAheadLogBytesMax)")
            }
            database = try DatabaseQueue(path: path, configuration: configuration)
            try database.write { db in
                let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                if version != Self.layoutVersion, try db.tableExists("blocks") {
                    // Layout 1 (before user_version was set) kept blocks in a WITHOUT ROWID
                    // table keyed by room: every insert landed at a random place in it.
                    // Layout 2's messages had no client time text. Either is rebuilt.
                    try db.execute(sql: "DROP TABLE IF EXISTS blocks; DROP TABLE IF EXISTS rooms; DROP TABLE IF EXISTS checkpoint")
                }
                // Messages are stored in blocks of up to 64 consecutive messages of one room
                // (FORMAT.md §10): a rebuild writes one row per block, not per message.
                try db.execute(sql: """
                    CREATE TABLE IF NOT EXISTS rooms (
                        id INTEGER PRIMARY KEY,
                        name TEXT NOT NULL UNIQUE
                    );
                    -- Blocks are appended in offset order, so rows go to the end of the table;
                    -- only the small index is updated at random places.
                    CREATE TABLE IF NOT EXISTS blocks (
                        id INTEGER PRIMARY KEY,
                        room_id INTEGER NOT NULL REFERENCES rooms (id),
                        first_offset INTEGER NOT NULL,
                        last_offset INTEGER NOT NULL,
                        count INTEGER NOT NULL,
                        data BLOB NOT NULL
                    );
                    CREATE UNIQUE INDEX IF NOT EXISTS blocks_by_room ON blocks (room_id, first_offset);
                    CREATE TABLE IF NOT EXISTS checkpoint (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        next_offset INTEGER NOT NULL
                    );
                    INSERT OR IGNORE INTO checkpoint (id, next_offset) VALUES (1, 0);
                    PRAGMA user_version = \(Self.layoutVersion);
                    """)
            }
        } catch {
            throw .database("opening \(path): \(error)")
        }
    }

    /// Opens an existing History database for reading only, beside the process that maintains
    /// it (a running server): SQLite's WAL lets readers and one writer work at once.
    /// - Throws: `ProjectionError.database` when there is no such database or it is of another layout.
    public init(readingOnly path: String) throws(ProjectionError) {
        self.path = path
        do {
            var configuration = Configuration()
            configuration.readonly = true
            database = try DatabaseQueue(path: path, configuration: configuration)
            let version = try database.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0 }
            guard version == Self.layoutVersion else {
                throw ProjectionError.database("\(path) has layout \(version), not \(Self.layoutVersion); the server rebuilds it")
            }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("opening \(path) for reading: \(error)")
        }
    }

    /// Makes an empty History start at `offset` (a journal that starts there: a standby
    /// seeded from a leader's snapshot). Nothing when it holds anything already.
    public func begin(at offset: Offset) throws(ProjectionError) {
        do {
            try database.write { db in
                try db.execute(sql: "UPDATE checkpoint SET next_offset = ? WHERE id = 1 AND next_offset = 0 AND NOT EXISTS (SELECT 1 FROM blocks)",
                               arguments: [Int64(offset.value)])
            }
        } catch {
            throw .database("setting the checkpoint: \(error)")
        }
    }

    /// Every event below this offset has been applied.
    public func nextOffset() throws(ProjectionError) -> Offset {
        do {
            return Offset(UInt64(try database.read { db in
                try Int64.fetchOne(db, sql: "SELECT next_offset FROM checkpoint WHERE id = 1") ?? 0
            }))
        } catch {
            throw .database("reading the checkpoint: \(error)")
        }
    }

    /// Applies the events of `batches` at or after the stored checkpoint, and moves the
    /// checkpoint to the end of the last batch, in one transaction.
    /// - Throws: `ProjectionError.malformedEvent` (nothing of this call is applied), `.database`.
    /// Applies the batches' events in one transaction. With `deferTails` (a catch-up: the
    /// projection is not being read), rooms' partly filled last blocks are written only once
    /// full, or by `writeDeferredTails()`, instead of once per transaction; the checkpoint then
    /// stays at the earliest change only memory holds.
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
                var writer = try BlockWriter(db: db, rooms: try self.roomIDs(db), tails: tails)
                try records(start) { record in
                    let offset = record.offset.value
                    // Messages (nearly every record) are copied from the record's bytes into
                    // their block without building strings; the rest are decoded.
                    let copied: Bool?
                    do {
                        copied = try ChatEventCodec.withMessageSent(record.payload) { message in
                            try writer.append(room: String(decoding: message.room, as: UTF8.self), offset: offset) { block in
                                block.append(offset: offset, sentMs: message.timestampMs, clientCreatedMs: message.clientCreatedMs,
                                             author: message.actor, clientMessageID: message.clientMessageID, text: message.text,
                                             clientCreatedText: message.clientCreatedText)
                            }
                            return true
                        }
                    } catch let error as ChatEventDecodingError {
                        throw ProjectionError.malformedEvent(offset: record.offset, error)
                    }
                    guard copied == nil, case .event(let event) = try ProjectionError.decode(record) else { return }
                    switch event.body {
                    case .messageSent(let clientMessageID, let text, let clientCreatedMs, let clientCreatedText):
                        let message = HistoryBlock.Message(
                            offset: offset, author: event.actor.value, clientMessageID: clientMessageID,
                            text: text, clientCreatedMs: clientCreatedMs, sentMs: event.timestampMs,
                            clientCreatedText: clientCreatedText)
                        try writer.append(room: event.room.value, offset: offset) { $0.append(message) }
                    case .messageEdited(let message, let text):
                        try writer.update(room: event.room.value, offset: message.offset, event: offset) { message in
                            guard message.deletedMs == nil else { return }
                            message.text = text
                            message.editedMs = event.timestampMs
                        }
                    case .messageDeleted(let message):
                        deleted = true
                        try writer.update(room: event.room.value, offset: message.offset, event: offset) { message in
                            message.text = nil
                            message.deletedMs = event.timestampMs
                        }
                    case .roomCreated, .memberInvited, .invitationRevoked, .memberJoined, .memberLeft, .memberRemoved:
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

        init(db: Database, rooms: [String: Int64], tails: [Int64: Tail]) throws {
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

        /// Appends the message at `offset` to its room's open block: `append` adds it.
        mutating func append(room name: String, offset: UInt64, _ append: (inout HistoryBlock) -> Void) throws {
            guard let room = try roomID(name, create: true) else { return }
            let slot = try slot(of: room)
            if let last = lastOffsets[slot], offset <= last { return }
            if blocks[slot].isFull {
                if changedSince[slot] != nil { try write(blocks[slot], room: room) }
                blocks[slot] = HistoryBlock()
                changedSince[slot] = nil
            }
            append(&blocks[slot])
            lastOffsets[slot] = offset
            if changedSince[slot] == nil { changedSince[slot] = offset }
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

    /// Makes deleted text unrecoverable from the files: the write-ahead log still holds pages
    /// as they were before a deletion, so fold it into the database (where `secure_delete`
    /// zeroed the text) and truncate it. Does nothing when nothing was deleted since the last
    /// call. The runner calls it after each live step and at the end of a catch-up (not per
    /// transaction during a rebuild, where it would dominate).
    /// How large the write-ahead log may grow while a server follows the journal before
    /// `boundWriteAheadLog()` checkpoints and truncates it. Without it, the log grew to about
    /// 40 MB (the autocheckpoint, tuned for rebuilds) and kept its size: on a small disk it
    /// filled the space the journal needed.
    public static let writeAheadLogBytesMax = 8 << 20

    /// Checkpoints the write-ahead log into the database and truncates it to zero bytes once it
    /// is larger than `writeAheadLogBytesMax`: so while a server runs, the log holds at most
    /// that much plus one transaction. Cheap when under the bound (one `stat`).
    /// - Throws: `ProjectionError.database`.
    public func boundWriteAheadLog() throws(ProjectionError) {
        var info = stat()
        guard stat(path + "-wal", &info) == 0, Int(info.st_size) > Self.writeAheadLogBytesMax else { return }
        do {
            try database.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            }
        } catch {
            throw .database("checkpointing the write-ahead log: \(error)")
        }
    }

    public func eraseDeletedText() throws(ProjectionError) {
        guard needsErasure.withLock({ $0 }) else { return }
        do {
            try database.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            }
            needsErasure.withLock { $0 = false }
        } catch {
            throw .database("checkpointing after a deletion: \(error)")
        }
    }

    /// A page of `room`'s messages in offset order: the newest `limit` when neither bound is
    /// given, the `limit` just before `before`, or the `limit` just after `after`.
    /// - Throws: `ProjectionError.invalidQuery` for a limit outside 1...200 or both bounds.
    public func page(room: String, before: UInt64? = nil, after: UInt64? = nil, limit: Int = 50) throws(ProjectionError) -> [HistoryMessage] {
        guard (1...Self.pageLimitMax).contains(limit) else {
            throw .invalidQuery("limit must be in 1...\(Self.pageLimitMax), got \(limit)")
        }
        do {
            return try database.read { db in
                guard let roomID = try Int64.fetchOne(db, sql: "SELECT id FROM rooms WHERE name = ?", arguments: [room]) else {
                    return []
                }
                var page: [HistoryMessage] = []
                let bound = before ?? UInt64(Int64.max)
                if let after {
                    // The block holding `after`, then the blocks after it, until the page is full.
                    let cursor = try Row.fetchCursor(db, sql: """
                        SELECT data FROM blocks WHERE room_id = ? AND first_offset >= COALESCE(
                            (SELECT MAX(first_offset) FROM blocks WHERE room_id = ? AND first_offset <= ?), 0)
                        ORDER BY first_offset ASC
                        """, arguments: [roomID, roomID, Int64(clamping: after)])
                    // Blocks and their messages ascend: the first message at `bound` ends the page.
                    pages: while page.count < limit, let row = try cursor.next() {
                        guard let block = HistoryBlock.decode(row["data"] as Data?) else { throw ProjectionError.database("damaged block in \(room)") }
                        for message in block.messages where message.offset > after && page.count < limit {
                            guard message.offset < bound else { break pages }
                            page.append(message.history(room: room))
                        }
                    }
                    return page
                }
                let cursor = try Row.fetchCursor(db, sql: """
                    SELECT data FROM blocks WHERE room_id = ? AND first_offset < ? ORDER BY first_offset DESC
                    """, arguments: [roomID, Int64(clamping: bound)])
                while page.count < limit, let row = try cursor.next() {
                    guard let block = HistoryBlock.decode(row["data"] as Data?) else { throw ProjectionError.database("damaged block in \(room)") }
                    for message in block.messages.reversed() where message.offset < bound && page.count < limit {
                        page.append(message.history(room: room))
                    }
                }
                return page.reversed()
            }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("reading history of \(room): \(error)")
        }
    }

    public func messageCount() throws(ProjectionError) -> Int {
        do {
            return try database.read { db in try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(count), 0) FROM blocks") ?? 0 }
        } catch {
            throw .database("counting messages: \(error)")
        }
    }

    /// Every message, in offset order (for comparing projections in tests and tools).
    public func allMessages() throws(ProjectionError) -> [HistoryMessage] {
        do {
            return try database.read { db in
                var messages: [HistoryMessage] = []
                for row in try Row.fetchAll(db, sql: "SELECT rooms.name, blocks.data FROM blocks JOIN rooms ON rooms.id = blocks.room_id") {
                    guard let block = HistoryBlock.decode(row[1] as Data?) else { throw ProjectionError.database("damaged block") }
                    let room: String = row[0]
                    messages += block.messages.map { $0.history(room: room) }
                }
                return messages.sorted { $0.offset < $1.offset }
            }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("reading history: \(error)")
        }
    }
}
