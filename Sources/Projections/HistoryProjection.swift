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
    /// The message of the same room this one replies to.
    public var replyTo: UInt64?
    /// Its reactions, each emoji in the order it was first given, its users in the order they gave it.
    public var reactions: [HistoryReaction] = []

    public init(offset: UInt64, room: String, author: String, clientMessageID: String, text: String?, clientCreatedMs: Int64,
                sentMs: Int64, editedMs: Int64? = nil, deletedMs: Int64? = nil, clientCreatedText: String? = nil,
                replyTo: UInt64? = nil, reactions: [HistoryReaction] = []) {
        self.replyTo = replyTo
        self.reactions = reactions
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

/// One reaction to a message: the emoji and who gave it.
public struct HistoryReaction: Sendable, Equatable, Codable {
    public var emoji: String
    public var users: [String]

    public init(emoji: String, users: [String]) {
        self.emoji = emoji
        self.users = users
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
    public static let layoutVersion = 5

    public let path: String
    let database: DatabaseQueue
    /// Set when a transaction deleted text that the WAL may still hold.
    let needsErasure = Mutex(false)
    /// Room name -> rooms.id, as committed; nil until first loaded.
    let roomCache = Mutex<[String: Int64]?>(nil)
    /// Each room's last block as committed, so appends need not read it back.
    let tailCache = Mutex<[Int64: Tail]>([:])
    /// The end of the last transaction, when its checkpoint lags behind it because tails were
    /// deferred (`apply(_:deferTails:)`); `writeDeferredTails()` catches the checkpoint up.
    let deferredEnd = Mutex<Offset?>(nil)

    /// A room's last, partly filled block as this process holds it, and the offset of the
    /// first event that changed it since it was last written (nil: the database has it).
    struct Tail: Sendable {
        var block: HistoryBlock
        var changedSince: UInt64?
    }

    /// Opens (creating if needed) the history database at `path`.
    /// - Throws: `ProjectionError.database`.
    public init(path: String) throws(ProjectionError) {
        self.path = path
        do {
            // 64 MiB of page cache: inserts into the per-room index stay in memory during a
            // rebuild. A fixed bound: History's memory does not grow with the journal.
            let configuration = ProjectionDatabase.configuration(cacheMiB: 64)
            database = try DatabaseQueue(path: path, configuration: configuration)
            try database.write { db in
                let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                let stored = try db.tableExists("blocks")
                let migrating = stored && (version == 3 || version == 4)
                if version != Self.layoutVersion, !migrating, stored {
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
                    -- Layout 4: what messages carry besides their block (FORMAT.md §10).
                    CREATE TABLE IF NOT EXISTS replies (
                        room_id INTEGER NOT NULL,
                        offset INTEGER NOT NULL,
                        reply_to INTEGER NOT NULL,
                        PRIMARY KEY (room_id, offset)
                    ) WITHOUT ROWID;
                    -- In rowid order: the order reactions were given.
                    CREATE TABLE IF NOT EXISTS reactions (
                        id INTEGER PRIMARY KEY,
                        room_id INTEGER NOT NULL,
                        offset INTEGER NOT NULL,
                        emoji TEXT NOT NULL,
                        user TEXT NOT NULL
                    );
                    CREATE UNIQUE INDEX IF NOT EXISTS reactions_by_message ON reactions (room_id, offset, emoji, user);
                    CREATE TABLE IF NOT EXISTS mentions (
                        user TEXT NOT NULL,
                        room_id INTEGER NOT NULL,
                        offset INTEGER NOT NULL,
                        PRIMARY KEY (user, room_id, offset)
                    ) WITHOUT ROWID;
                    CREATE INDEX IF NOT EXISTS mentions_by_message ON mentions (room_id, offset);
                    -- The text each edit or deletion replaced, until the search index has
                    -- applied the event (it takes exactly those words out of its index).
                    CREATE TABLE IF NOT EXISTS replaced (
                        event INTEGER PRIMARY KEY,
                        text TEXT NOT NULL
                    );
                    -- Below this offset, replaced texts may be gone (pruned, or never
                    -- recorded: a file of an older layout starts it at its checkpoint).
                    CREATE TABLE IF NOT EXISTS replaced_floor (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        offset INTEGER NOT NULL
                    );
                    INSERT OR IGNORE INTO replaced_floor (id, offset) SELECT 1, next_offset FROM checkpoint WHERE id = 1;
                    PRAGMA user_version = \(Self.layoutVersion);
                    """)
                // Layout 3 had no mentions: they are made from the messages it holds. (It had no
                // replies and no reactions either: its builds wrote none.)
                if migrating && version == 3 { try Self.indexMentions(db) }
                // Layout 4 held the search index, which is now a projection of its own
                // (`SearchProjection`): its tables go, and their text with them.
                if migrating && version == 4 {
                    for shard in try Int64.fetchAll(db, sql: "SELECT shard FROM search_shards") {
                        try db.execute(sql: "DROP TABLE IF EXISTS search_\(shard)")
                    }
                    try db.execute(sql: "DROP TABLE IF EXISTS search_shards; DROP TABLE IF EXISTS search_erase")
                    needsErasure.withLock { $0 = true }
                }
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
        database = try ProjectionDatabase.openReadingOnly(path, layout: Self.layoutVersion)
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

    /// Checkpoints the write-ahead log into the database and truncates it to zero bytes once it
    /// is larger than `ProjectionDatabase.writeAheadLogBytesMax` (8 MiB): so while a server runs,
    /// the log holds at most that much plus one transaction.
    /// - Throws: `ProjectionError.database`.
    public func boundWriteAheadLog() throws(ProjectionError) {
        try ProjectionDatabase.boundWriteAheadLog(database, path: path)
    }

    /// Makes deleted text unrecoverable from the files: the write-ahead log still holds pages
    /// as they were before a deletion, so fold it into the database (where `secure_delete`
    /// zeroed the text) and truncate it. Does nothing when nothing was deleted since the last
    /// call. The runner calls it after each live step and at the end of a catch-up (not per
    /// transaction during a rebuild, where it would dominate).
    public func eraseDeletedText() throws(ProjectionError) {
        guard needsErasure.withLock({ $0 }) else { return }
        try ProjectionDatabase.truncateWriteAheadLog(database)
        needsErasure.withLock { $0 = false }
    }
}
