import ChatModel
import Foundation
import GRDB
import GRDBSQLite
import Journal
import Synchronization

/// A message a search found: its id (journal offset) and its room.
public struct SearchHit: Sendable, Equatable {
    public var offset: UInt64
    public var room: String

    public init(offset: UInt64, room: String) {
        self.offset = offset
        self.room = room
    }
}

/// Full-text search over the journal's messages: a projection of its own (SQLite FTS5, in
/// `search.sqlite` beside History), so that indexing is never in History's transactions nor on
/// the path from commit to broadcast. Its writer follows the journal behind the others, in
/// large transactions (FORMAT.md §10, "Search database").
///
/// The index is split into **shards** of 2^`shardBits` consecutive offsets, one FTS5 table each
/// (`search_<n>` for offsets `n << 18 ..< (n + 1) << 18`), listed in `shards`. The tables are
/// contentless (`content=''`, words only: `detail=none`, so no phrase queries, which search does
/// not offer): a message's words are indexed under its offset, and `messages` lists the indexed
/// messages with their rooms. An edit takes the old words out and puts the new ones in, a
/// deletion takes them out; the words to take out are exactly the text History says the event
/// replaced (`HistoryProjection.replacedTexts(of:)`), so the index applies a read only after
/// History has, and then lets History forget those texts (`pruneReplaced(below:)`). A message is
/// inserted once: its offset is at or after the checkpoint, which moves in the same
/// transaction. The index may start from History's messages (`seed(from:)`) when the journal no
/// longer holds them. FTS5 keeps a deleted row's words in its segments until they are merged,
/// and this SQLite (3.40) has no `secure-delete` option: so a deletion records its shard in
/// `erase`, and `eraseDeletedText()` merges each such shard into one segment (FTS5's
/// `optimize`), leaving the old pages free (zeroed by `secure_delete`), before the write-ahead
/// log is checkpointed and truncated. Shards bound that merge: it rewrites one shard, not the
/// whole index.
///
/// Each application of events runs in one transaction with the offset up to which events are
/// applied. Thread-safe (GRDB's `DatabaseQueue`); one writer at a time is expected.
public final class SearchProjection: Sendable {
    /// The layout of the database (FORMAT.md §10, "Search database"), in SQLite's `user_version`. A file of
    /// another layout is derived data of another build: it is emptied and rebuilt.
    public static let layoutVersion = 2
    /// Offsets per shard: 2^18.
    public static let shardBits = 18
    /// FTS5's `automerge` of each shard: how many segments of one size it lets pile up before
    /// merging them (FTS5's default is 4). 8 measured 8 % less time for a rebuild
    /// (`projections rebuild --only search`, 1 M events); a search reads at most that many
    /// segments a level more.
    static let automerge = 8
    /// Most words a query may have.
    public static let wordsMax = 8
    /// Longest query, in UTF-8 bytes.
    public static let queryBytesMax = 256
    /// Most results of one search.
    public static let limitMax = 50

    public let path: String
    let database: DatabaseQueue
    /// Set when a transaction deleted text that the index's segments and the WAL may still hold.
    let needsErasure = Mutex(false)
    /// Room ids and the shards that exist, as committed; nil until first loaded.
    let known = Mutex<Known?>(nil)

    struct Known: Sendable {
        var rooms: [String: Int64]
        var shards: Set<Int64>
    }

    static func shard(of offset: UInt64) -> Int64 { Int64(offset >> UInt64(shardBits)) }

    static func table(_ shard: Int64) -> String { "search_\(shard)" }

    /// Opens (creating if needed) the search database at `path`.
    /// - Throws: `ProjectionError.database`.
    public init(path: String) throws(ProjectionError) {
        self.path = path
        do {
            // A small cache: the index is written in order, one shard at a time.
            database = try DatabaseQueue(path: path, configuration: ProjectionDatabase.configuration(cacheMiB: 16))
            try database.write { db in
                let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                if version != Self.layoutVersion, try db.tableExists("checkpoint") { try Self.dropEverything(db) }
                try db.execute(sql: """
                    CREATE TABLE IF NOT EXISTS rooms (
                        id INTEGER PRIMARY KEY,
                        name TEXT NOT NULL UNIQUE
                    );
                    CREATE TABLE IF NOT EXISTS checkpoint (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        next_offset INTEGER NOT NULL
                    );
                    INSERT OR IGNORE INTO checkpoint (id, next_offset) VALUES (1, 0);
                    CREATE TABLE IF NOT EXISTS shards (shard INTEGER PRIMARY KEY);
                    CREATE TABLE IF NOT EXISTS erase (shard INTEGER PRIMARY KEY);
                    -- The indexed messages and their rooms (the index keeps no columns).
                    CREATE TABLE IF NOT EXISTS messages (
                        offset INTEGER PRIMARY KEY,
                        room_id INTEGER NOT NULL
                    );
                    PRAGMA user_version = \(Self.layoutVersion);
                    """)
                // A merge that a deletion asked for and a crash prevented.
                if try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM erase") ?? 0 > 0 { needsErasure.withLock { $0 = true } }
            }
        } catch {
            throw .database("opening \(path): \(error)")
        }
    }

    /// Opens an existing search database for reading only, beside the server that maintains it.
    /// - Throws: `ProjectionError.database` when there is none or it is of another layout.
    public init(readingOnly path: String) throws(ProjectionError) {
        self.path = path
        database = try ProjectionDatabase.openReadingOnly(path, layout: Self.layoutVersion)
    }

    /// Every event below this offset has been applied.
    public func nextOffset() throws(ProjectionError) -> Offset {
        do {
            return Offset(UInt64(try database.read { db in try Self.checkpoint(db) }))
        } catch {
            throw .database("reading the search checkpoint: \(error)")
        }
    }

    private static func checkpoint(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT next_offset FROM checkpoint WHERE id = 1") ?? 0
    }

    /// Applies the events of `batches` at or after the stored checkpoint, and moves the
    /// checkpoint to the end of the last batch, in one transaction. `history` must have applied
    /// them already: an edit or a deletion takes out of the index the words of the text History
    /// says it replaced.
    /// - Throws: `ProjectionError.malformedEvent` (nothing of this call is applied), `.database`
    ///   (also when History does not have a replaced text it should have).
    public func apply(_ batches: [RecordBatch], history: HistoryProjection) throws(ProjectionError) {
        // What the read's edits and deletions replaced, in one read of History.
        try apply(batches, replaced: try history.replacedTexts(of: batches))
    }

    /// `apply(_:history:)` with History's replaced texts of the batches' offsets read already
    /// (`HistoryProjection.replacedTexts(of:)`).
    public func apply(_ batches: [RecordBatch], replaced: [UInt64: String]) throws(ProjectionError) {
        guard let end = batches.last?.nextOffset else { return }
        try write(through: end) { start, index in
            let fates = try Self.applyEditsAndDeletions(of: batches, from: start, to: &index, replaced: replaced)
            for batch in batches where batch.nextOffset.value > start {
                for record in batch.records where record.offset.value >= start && ChatEventCodec.isMessageSent(record.payload) {
                    try Self.insert(record, to: &index, fate: fates[record.offset.value])
                }
            }
        }
    }

    /// What becomes of a message that the transaction both sends and edits or deletes.
    enum Fate {
        /// Indexed with its last edit's text.
        case edited(String)
        /// Never indexed: its words never reach the files, and nothing is left to erase.
        case deleted
    }

    /// The edits and deletions of the batches' events at or after `start` (two bytes read per
    /// record to find them; only they are decoded): those of earlier transactions' messages go
    /// to `index` (which applies them together at the transaction's end); those of this
    /// transaction's messages are returned, as each message's fate, so that it is indexed once,
    /// as it ends.
    private static func applyEditsAndDeletions(of batches: [RecordBatch], from start: UInt64, to index: inout IndexWriter,
                                               replaced: [UInt64: String]) throws -> [UInt64: Fate] {
        var fates: [UInt64: Fate] = [:]
        for batch in batches where batch.nextOffset.value > start {
            for record in batch.records where record.offset.value >= start && ChatEventCodec.isEditOrDeletion(record.payload) {
                guard case .event(let event) = try ProjectionError.decode(record) else { continue }
                let offset = record.offset.value
                switch event.body {
                case .messageEdited(let message, let text) where message.offset < start:
                    try index.replace(message: message.offset, by: offset, text: text, replaced: replaced[offset])
                case .messageEdited(let message, let text):
                    // A deleted message stays deleted: History ignores a later edit too.
                    if case .deleted = fates[message.offset] { continue }
                    fates[message.offset] = .edited(text)
                case .messageDeleted(let message) where message.offset < start:
                    try index.delete(message: message.offset, by: offset, replaced: replaced[offset])
                case .messageDeleted(let message):
                    fates[message.offset] = .deleted
                default:
                    break
                }
            }
        }
        return fates
    }

    /// Indexes a `messageSent` record, read from its bytes (decoded only when its identifiers
    /// need `decode`'s full check), with its last text when the transaction edits it, and not
    /// at all when the transaction deletes it.
    private static func insert(_ record: JournalRecord, to index: inout IndexWriter, fate: Fate?) throws {
        if case .deleted = fate { return }
        let offset = record.offset.value
        let read: Bool?
        do {
            read = try ChatEventCodec.withMessageSent(record.payload) { message in
                let room = String(decoding: message.room, as: UTF8.self)
                if case .edited(let text) = fate {
                    try index.insert(room: room, offset: offset, text: text)
                } else {
                    try index.insert(room: room, offset: offset, text: message.text)
                }
                return true
            }
        } catch let error as ChatEventDecodingError {
            throw ProjectionError.malformedEvent(offset: record.offset, error)
        }
        guard read == nil, case .event(let event) = try ProjectionError.decode(record),
              case .messageSent(_, let text, _, _, _) = event.body
        else { return }
        if case .edited(let last) = fate {
            try index.insert(room: event.room.value, offset: offset, text: last)
        } else {
            try index.insert(room: event.room.value, offset: offset, text: text)
        }
    }

    /// A new index begins with the messages History holds (when the journal or History no
    /// longer has what replaying would need: a retention-cut journal, a standby seeded from a
    /// snapshot, History's replaced texts let go, a search database deleted) and goes on from
    /// History's checkpoint. History's deferred blocks are written first, so that the texts are
    /// exactly its state at that checkpoint: an edit after it takes out the words it replaced.
    /// Written in transactions of `seedTransactionMessages`; the checkpoint moves only with the
    /// last, so a crash in between starts the seed again.
    /// - Throws: `ProjectionError.database`.
    public func seed(from history: HistoryProjection) throws(ProjectionError) {
        var pending: [(String, UInt64, String)] = []
        func flush(through end: Offset?) throws(ProjectionError) {
            let messages = pending
            pending.removeAll(keepingCapacity: true)
            try write(through: end, replacing: true) { _, index in
                for (room, offset, text) in messages { try index.insert(room: room, offset: offset, text: text) }
            }
        }
        do {
            // Its blocks as of its checkpoint, none written ahead of it.
            try history.writeDeferredTails()
            try database.write { db in
                try Self.dropEverything(db, keepingTables: true)
                try db.execute(sql: "UPDATE checkpoint SET next_offset = 0 WHERE id = 1")
            }
            known.withLock { $0 = nil }
            let checkpoint = try history.forEachStoredText { room, offset, text in
                pending.append((room, offset, text))
                if pending.count >= Self.seedTransactionMessages { try flush(through: nil) }
            }
            try flush(through: checkpoint)
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("seeding the search index from History: \(error)")
        }
    }

    /// Messages per transaction of `seed(from:)`.
    static let seedTransactionMessages = 100_000

    /// One transaction: `changes` gets the stored checkpoint and the index to change; the
    /// checkpoint then moves to `end` (stays, when nil). With `replacing`, the checkpoint is not
    /// a bound (a seed writes whatever it is given).
    private func write(through end: Offset?, replacing: Bool = false,
                       _ changes: (UInt64, inout IndexWriter) throws -> Void) throws(ProjectionError) {
        var committed: Known?
        var deleted = false
        do {
            try database.write { db in
                let start = UInt64(try Self.checkpoint(db))
                if !replacing, let end, end.value <= start { return }
                var index = IndexWriter(db: db, known: try self.loadKnown(db))
                try changes(start, &index)
                try index.applyChanges()
                if let end { try db.execute(sql: "UPDATE checkpoint SET next_offset = ? WHERE id = 1", arguments: [Int64(end.value)]) }
                committed = index.known
                deleted = index.deleted
            }
        } catch let error as ProjectionError {
            known.withLock { $0 = nil }
            throw error
        } catch {
            known.withLock { $0 = nil }
            throw .database("indexing messages up to offset \(end.map { "\($0)" } ?? "?"): \(error)")
        }
        // Only once the transaction has committed does the cache learn what it wrote.
        if let committed { known.withLock { $0 = committed } }
        if deleted { needsErasure.withLock { $0 = true } }
    }

    private func loadKnown(_ db: Database) throws -> Known {
        if let cached = known.withLock({ $0 }) { return cached }
        var rooms: [String: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, name FROM rooms") { rooms[row[1]] = row[0] }
        return Known(rooms: rooms, shards: Set(try Int64.fetchAll(db, sql: "SELECT shard FROM shards")))
    }

    /// One transaction's changes to the index.
    struct IndexWriter {
        let db: Database
        var known: Known
        var deleted = false
        /// Each shard's insert, and the messages table's, prepared once per transaction (not
        /// looked up by their SQL text per message).
        private var inserts: [Int64: Statement] = [:]
        private var messageInsert: Statement?
        /// Each shard's `'delete'` command, prepared once per transaction.
        private var deletes: [Int64: Statement] = [:]

        init(db: Database, known: Known) {
            self.db = db
            self.known = known
        }

        /// Indexes a message.
        mutating func insert(room name: String, offset: UInt64, text: String) throws {
            var text = text
            try text.withUTF8 { bytes in try insert(room: name, offset: offset, text: bytes) }
        }

        /// Indexes a message whose text is UTF-8 `text` (the record's bytes: no string is built).
        mutating func insert(room name: String, offset: UInt64, text: UnsafeBufferPointer<UInt8>) throws {
            let shard = SearchProjection.shard(of: offset)
            if !known.shards.contains(shard) {
                try db.execute(sql: """
                    CREATE VIRTUAL TABLE IF NOT EXISTS \(SearchProjection.table(shard)) USING fts5(
                        text, tokenize = 'unicode61 remove_diacritics 2', columnsize = 0, detail = none, content = '');
                    INSERT INTO \(SearchProjection.table(shard)) (\(SearchProjection.table(shard)), rank)
                        VALUES ('automerge', \(SearchProjection.automerge));
                    INSERT OR IGNORE INTO shards (shard) VALUES (\(shard));
                    """)
                known.shards.insert(shard)
            }
            let room: Int64
            if let id = known.rooms[name] {
                room = id
            } else {
                try db.cachedStatement(sql: "INSERT INTO rooms (name) VALUES (?)").execute(arguments: [name])
                room = db.lastInsertedRowID
                known.rooms[name] = room
            }
            try Self.execute(try index(shard), offset, text: text, db)
            if messageInsert == nil { messageInsert = try db.makeStatement(sql: "INSERT INTO messages (offset, room_id) VALUES (?, ?)") }
            if let messageInsert { try Self.execute(messageInsert, offset, room, db) }
        }

        /// The shard's insert, prepared once per transaction.
        private mutating func index(_ shard: Int64) throws -> Statement {
            if let prepared = inserts[shard] { return prepared }
            let insert = try db.makeStatement(sql: "INSERT INTO \(SearchProjection.table(shard)) (rowid, text) VALUES (?, ?)")
            inserts[shard] = insert
            return insert
        }

        /// The insert with its arguments bound through SQLite's C API: GRDB's general path
        /// (arguments boxed as values, checked, observed) cost about 0.7 µs of the 6.3 a
        /// message took in a rebuild (`projections rebuild --only search`, 1 M events). The text
        /// is bound without a copy (`SQLITE_STATIC`): the statement is stepped and reset while
        /// `text` is valid.
        private static func execute(_ insert: Statement, _ offset: UInt64, text: UnsafeBufferPointer<UInt8>, _ db: Database) throws {
            let statement = insert.sqliteStatement
            sqlite3_bind_int64(statement, 1, Int64(offset))
            sqlite3_bind_text(statement, 2, UnsafeRawPointer(text.baseAddress)?.assumingMemoryBound(to: CChar.self),
                              Int32(text.count), nil)
            try check(step(statement), insert, db)
        }

        private static func execute(_ insert: Statement, _ offset: UInt64, text: String, _ db: Database) throws {
            var text = text
            try text.withUTF8 { bytes in try execute(insert, offset, text: bytes, db) }
        }

        /// The same for two integers.
        private static func execute(_ insert: Statement, _ first: UInt64, _ second: Int64, _ db: Database) throws {
            let statement = insert.sqliteStatement
            sqlite3_bind_int64(statement, 1, Int64(first))
            sqlite3_bind_int64(statement, 2, second)
            try check(step(statement), insert, db)
        }

        private static func step(_ statement: OpaquePointer) -> Int32 {
            defer {
                sqlite3_reset(statement)
                sqlite3_clear_bindings(statement)
            }
            return sqlite3_step(statement)
        }

        private static func check(_ code: Int32, _ statement: Statement, _ db: Database) throws {
            guard code == SQLITE_DONE else {
                throw DatabaseError(resultCode: ResultCode(rawValue: code), message: db.lastErrorMessage, sql: statement.sql)
            }
        }

        /// An edit (the event at `event`): the message is found by its new text (not at all,
        /// when it is not indexed). Applied with the transaction's other changes
        /// (`applyChanges()`).
        mutating func replace(message: UInt64, by event: UInt64, text: String, replaced: String?) throws {
            guard var change = try change(of: message, by: event, replaced: replaced), change.text != nil else { return }
            change.text = text
            changes[message] = change
        }

        /// A deletion (the event at `event`): the message is no longer found, and its shard is
        /// to be merged so that its words leave the file (`eraseDeletedText()`).
        mutating func delete(message: UInt64, by event: UInt64, replaced: String?) throws {
            guard var change = try change(of: message, by: event, replaced: replaced), change.text != nil else { return }
            change.text = nil
            changes[message] = change
            try db.cachedStatement(sql: "DELETE FROM messages WHERE offset = ?").execute(arguments: [Int64(message)])
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO erase (shard) VALUES (?)").execute(arguments: [SearchProjection.shard(of: message)])
            deleted = true
        }

        /// What this transaction does to an indexed message: the words it had when the
        /// transaction first changed it, and its text now (nil once deleted).
        struct Change {
            var indexed: String
            var text: String?
        }

        /// The edits and deletions of this transaction, by message, applied together at its end.
        /// FTS5 accumulates a transaction's words in memory and writes them out as a new segment
        /// whenever it is given a row below the last one (fts5_index.c, `sqlite3Fts5IndexBeginWrite`):
        /// taking out an earlier message's words at each edit or deletion cost a segment each,
        /// and merging those segments later more than half of a rebuild's time (`bench replay`).
        /// Applied at the end, in offset order, a transaction's changes cost one segment.
        private var changes: [UInt64: Change] = [:]

        /// The message's change so far in this transaction: a new one when the message is
        /// indexed, holding the words `replaced`, the text History says the event replaced
        /// (exactly what was indexed: both applied the same events before it). Nil when the
        /// message is not indexed (deleted before, or never sent): then History replaced
        /// nothing either.
        private func change(of message: UInt64, by event: UInt64, replaced: String?) throws -> Change? {
            if let change = changes[message] { return change }
            guard try Int64.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM messages WHERE offset = ?"), arguments: [Int64(message)]) != nil
            else { return nil }
            guard let replaced else {
                throw ProjectionError.database("""
                    History has no text replaced by the event at offset \(event) (of message \(message)): \
                    rebuild the search index (chatlog projections rebuild --only search)
                    """)
            }
            return Change(indexed: replaced, text: replaced)
        }

        /// Takes out the words each changed message had, and puts in the edited texts, in offset
        /// order: the first message below the transaction's inserts makes FTS5 write what it
        /// holds, the rest follow in order and write nothing more.
        mutating func applyChanges() throws {
            for (message, change) in changes.sorted(by: { $0.key < $1.key }) {
                let shard = SearchProjection.shard(of: message)
                let takeOut: Statement
                if let prepared = deletes[shard] {
                    takeOut = prepared
                } else {
                    let table = SearchProjection.table(shard)
                    takeOut = try db.makeStatement(sql: "INSERT INTO \(table) (\(table), rowid, text) VALUES ('delete', ?, ?)")
                    deletes[shard] = takeOut
                }
                try Self.execute(takeOut, message, text: change.indexed, db)
                if let text = change.text { try Self.execute(try index(shard), message, text: text, db) }
            }
            changes.removeAll()
        }
    }

    /// Drops the index (every shard, and with `keepingTables` false every table too).
    private static func dropEverything(_ db: Database, keepingTables: Bool = false) throws {
        let virtual = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'")
        for table in virtual { try db.execute(sql: "DROP TABLE IF EXISTS \"\(table)\"") }
        if keepingTables {
            try db.execute(sql: "DELETE FROM shards; DELETE FROM erase; DELETE FROM rooms; DELETE FROM messages")
            return
        }
        let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        for table in tables { try db.execute(sql: "DROP TABLE IF EXISTS \"\(table)\"") }
    }

    /// Checkpoints and truncates the write-ahead log once it is larger than
    /// `ProjectionDatabase.writeAheadLogBytesMax` (8 MiB).
    public func boundWriteAheadLog() throws(ProjectionError) {
        try ProjectionDatabase.boundWriteAheadLog(database, path: path)
    }

    /// Makes deleted words unrecoverable from the files: merges each shard where messages were
    /// deleted into one segment, then folds the write-ahead log (which still holds the old
    /// pages) into the database and truncates it. Nothing to do when nothing was deleted since
    /// the last call.
    public func eraseDeletedText() throws(ProjectionError) {
        guard needsErasure.withLock({ $0 }) else { return }
        do {
            try database.write { db in
                for shard in try Int64.fetchAll(db, sql: "SELECT shard FROM erase") {
                    let table = Self.table(shard)
                    if try db.tableExists(table) {
                        try db.execute(sql: "INSERT INTO \(table) (\(table)) VALUES ('optimize')")
                    }
                    try db.execute(sql: "DELETE FROM erase WHERE shard = ?", arguments: [shard])
                }
            }
        } catch {
            throw .database("merging the search index after a deletion: \(error)")
        }
        try ProjectionDatabase.truncateWriteAheadLog(database)
        needsErasure.withLock { $0 = false }
    }
}
