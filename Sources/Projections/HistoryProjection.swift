import ChatModel
import GRDB
import GRDBSQLite
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
}

/// Message history per room for scroll-back, in SQLite through GRDB: a projection of the
/// journal's message events (sent, edited, deleted).
///
/// A deleted message's text is erased, not hidden: its column is set to NULL with SQLite's
/// `secure_delete` on, and `eraseDeletedText()` checkpoints and truncates the write-ahead log,
/// which still holds the old page.
///
/// Each application of events runs in one transaction that also stores the offset up to
/// which events are applied, so after a crash it resumes exactly where its last transaction
/// ended: no duplicate, no missing row. Thread-safe (GRDB's `DatabaseQueue` serializes
/// access); one writer at a time is expected (the projection runner).
public final class HistoryProjection: Sendable {
    /// Most messages one page query returns.
    public static let pageLimitMax = 200

    public let path: String
    let database: DatabaseQueue
    /// Set when a transaction deleted text that the WAL may still hold.
    private let needsErasure = Mutex(false)
    /// Room name -> rooms.id, as committed; nil until first loaded.
    private let roomCache = Mutex<[String: Int64]?>(nil)

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
                // Fewer, larger checkpoints (each fsyncs): about 40 MB of WAL between them.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 10000")
            }
            database = try DatabaseQueue(path: path, configuration: configuration)
            try database.write { db in
                // Rooms get small integer ids so that the per-room index compares integers. The
                // message offset is the rowid: appends go to the end of the table's b-tree.
                try db.execute(sql: """
                    CREATE TABLE IF NOT EXISTS rooms (
                        id INTEGER PRIMARY KEY,
                        name TEXT NOT NULL UNIQUE
                    );
                    CREATE TABLE IF NOT EXISTS messages (
                        offset INTEGER PRIMARY KEY,
                        room_id INTEGER NOT NULL REFERENCES rooms (id),
                        author TEXT NOT NULL,
                        client_message_id TEXT NOT NULL,
                        text TEXT,
                        client_created_ms INTEGER NOT NULL,
                        sent_ms INTEGER NOT NULL,
                        edited_ms INTEGER,
                        deleted_ms INTEGER
                    );
                    CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room_id, offset);
                    CREATE TABLE IF NOT EXISTS checkpoint (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        next_offset INTEGER NOT NULL
                    );
                    INSERT OR IGNORE INTO checkpoint (id, next_offset) VALUES (1, 0);
                    """)
            }
        } catch {
            throw .database("opening \(path): \(error)")
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
    public func apply(_ batches: [RecordBatch]) throws(ProjectionError) {
        guard let end = batches.last?.nextOffset else { return }
        var deleted = false
        var knownRooms: [String: Int64]?
        do {
            try database.write { db in
                let start = Offset(UInt64(try Int64.fetchOne(db, sql: "SELECT next_offset FROM checkpoint WHERE id = 1") ?? 0))
                guard end > start else { return }
                let insert = try db.cachedStatement(sql: """
                    INSERT INTO messages (offset, room_id, author, client_message_id, text, client_created_ms, sent_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """)
                let insertRoom = try db.cachedStatement(sql: "INSERT INTO rooms (name) VALUES (?)")
                var roomIDs = try self.roomIDs(db)
                let edit = try db.cachedStatement(sql: "UPDATE messages SET text = ?, edited_ms = ? WHERE offset = ? AND deleted_ms IS NULL")
                let delete = try db.cachedStatement(sql: "UPDATE messages SET text = NULL, deleted_ms = ? WHERE offset = ?")
                for batch in batches where batch.nextOffset > start {
                    for record in batch.records where record.offset >= start {
                        guard case .event(let event) = try ProjectionError.decode(record) else { continue }
                        switch event.body {
                        case .messageSent(let clientMessageID, let text, let clientCreatedMs):
                            let roomID: Int64
                            if let known = roomIDs[event.room.value] {
                                roomID = known
                            } else {
                                try Self.run(insertRoom, db) { Self.bind($0, 1, event.room.value) }
                                roomID = db.lastInsertedRowID
                                roomIDs[event.room.value] = roomID
                            }
                            try Self.run(insert, db) { statement in
                                Self.bind(statement, 1, Int64(record.offset.value))
                                Self.bind(statement, 2, roomID)
                                Self.bind(statement, 3, event.actor.value)
                                Self.bind(statement, 4, clientMessageID)
                                Self.bind(statement, 5, text)
                                Self.bind(statement, 6, clientCreatedMs)
                                Self.bind(statement, 7, event.timestampMs)
                            }
                        case .messageEdited(let message, let text):
                            try Self.run(edit, db) { statement in
                                Self.bind(statement, 1, text)
                                Self.bind(statement, 2, event.timestampMs)
                                Self.bind(statement, 3, Int64(message.offset))
                            }
                        case .messageDeleted(let message):
                            deleted = true
                            try Self.run(delete, db) { statement in
                                Self.bind(statement, 1, event.timestampMs)
                                Self.bind(statement, 2, Int64(message.offset))
                            }
                        case .roomCreated, .memberInvited, .invitationRevoked, .memberJoined, .memberLeft, .memberRemoved:
                            break
                        }
                    }
                }
                try db.execute(sql: "UPDATE checkpoint SET next_offset = ? WHERE id = 1", arguments: [Int64(end.value)])
                knownRooms = roomIDs
            }
            // Only once the transaction has committed does the cache learn its new rooms.
            if let knownRooms { roomCache.withLock { $0 = knownRooms } }
            if deleted { needsErasure.withLock { $0 = true } }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("applying events up to offset \(end): \(error)")
        }
    }

    /// Makes deleted text unrecoverable from the files: the write-ahead log still holds pages
    /// as they were before a deletion, so fold it into the database (where `secure_delete`
    /// zeroed the text) and truncate it. Does nothing when nothing was deleted since the last
    /// call. The runner calls it after each live step and at the end of a catch-up (not per
    /// transaction during a rebuild, where it would dominate).
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
        guard before == nil || after == nil else { throw .invalidQuery("give before or after, not both") }
        let columns = "offset, ?, author, client_message_id, text, client_created_ms, sent_ms, edited_ms, deleted_ms"
        do {
            return try database.read { db in
                let rows: [Row]
                guard let roomID = try Int64.fetchOne(db, sql: "SELECT id FROM rooms WHERE name = ?", arguments: [room]) else {
                    return []
                }
                if let after {
                    rows = try Row.fetchAll(db, sql: "SELECT \(columns) FROM messages WHERE room_id = ? AND offset > ? ORDER BY offset ASC LIMIT ?",
                                            arguments: [room, roomID, Int64(clamping: after), limit])
                } else {
                    rows = try Row.fetchAll(db, sql: "SELECT \(columns) FROM messages WHERE room_id = ? AND offset < ? ORDER BY offset DESC LIMIT ?",
                                            arguments: [room, roomID, Int64(clamping: before ?? UInt64(Int64.max)), limit]).reversed()
                }
                return rows.map { row in
                    HistoryMessage(offset: UInt64(row[0] as Int64), room: row[1], author: row[2], clientMessageID: row[3],
                                   text: row[4], clientCreatedMs: row[5], sentMs: row[6], editedMs: row[7], deletedMs: row[8])
                }
            }
        } catch {
            throw .database("reading history of \(room): \(error)")
        }
    }

    public func messageCount() throws(ProjectionError) -> Int {
        do {
            return try database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM messages") ?? 0 }
        } catch {
            throw .database("counting messages: \(error)")
        }
    }

    /// Every message, in offset order (for comparing projections in tests and tools).
    public func allMessages() throws(ProjectionError) -> [HistoryMessage] {
        do {
            return try database.read { db in
                try Row.fetchAll(db, sql: "SELECT offset, rooms.name, author, client_message_id, text, client_created_ms, sent_ms, edited_ms, deleted_ms FROM messages JOIN rooms ON rooms.id = messages.room_id ORDER BY offset").map { row in
                    HistoryMessage(offset: UInt64(row[0] as Int64), room: row[1], author: row[2], clientMessageID: row[3],
                                   text: row[4], clientCreatedMs: row[5], sentMs: row[6], editedMs: row[7], deletedMs: row[8])
                }
            }
        } catch {
            throw .database("reading history: \(error)")
        }
    }

    // MARK: Binding without per-row argument arrays

    /// Binds with `bindings`, steps once, resets. The hot path of a rebuild: GRDB's statement
    /// stays cached, values go straight to SQLite.
    private static func run(_ statement: Statement, _ db: Database, _ bindings: (SQLiteStatement) -> Void) throws {
        let raw = statement.sqliteStatement
        bindings(raw)
        let code = sqlite3_step(raw)
        sqlite3_reset(raw)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private static func bind(_ statement: SQLiteStatement, _ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(statement, index, value)
    }

    private static func bind(_ statement: SQLiteStatement, _ index: Int32, _ value: String) {
        var value = value
        guard !value.isEmpty else {
            sqlite3_bind_text(statement, index, "", 0, transient)
            return
        }
        value.withUTF8 { bytes in
            _ = bytes.withMemoryRebound(to: CChar.self) { chars in
                sqlite3_bind_text(statement, index, chars.baseAddress, Int32(chars.count), transient)
            }
        }
    }
}
