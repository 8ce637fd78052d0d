import ChatModel
import Foundation
import GRDB

/// Full-text search over History's messages (SQLite FTS5).
///
/// The index is split into **shards** of `searchShardOffsets` consecutive offsets, one FTS5
/// table each (`search_<n>` for offsets `n << 18 ..< (n + 1) << 18`), listed in
/// `search_shards`. A message is indexed in its offset's shard with its room, its text replaced
/// when edited, and deleted with it. FTS5 keeps a deleted row's words in its older segments until
/// they are merged, and this SQLite (3.40) has no `secure-delete` option: so a deletion also
/// records its shard in `search_erase`, and `eraseDeletedText()` merges each such shard into one
/// segment (FTS5's `optimize`), which leaves the old pages free, zeroed by `secure_delete`, before
/// the write-ahead log is checkpointed and truncated. Shards bound that merge: it rewrites one
/// shard, not the whole index. A search reads the shards newest first and stops when its page
/// is full.
extension HistoryProjection {
    /// Offsets per search shard (2^18).
    public static let searchShardBits = 18

    /// Most words a query may have.
    public static let searchWordsMax = 8
    /// Longest query, in UTF-8 bytes.
    public static let searchQueryBytesMax = 256
    /// Most results of one search.
    public static let searchLimitMax = 50

    static func shard(of offset: UInt64) -> Int64 { Int64(offset >> UInt64(searchShardBits)) }

    static func shardTable(_ shard: Int64) -> String { "search_\(shard)" }

    /// Creates the search tables (layout 4).
    static func createSearchTables(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS search_shards (shard INTEGER PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS search_erase (shard INTEGER PRIMARY KEY);
            """)
    }

    /// Indexes a message's text (again: a replay replaces it).
    static func indexText(_ db: Database, room: Int64, offset: UInt64, text: String, shards: inout Set<Int64>) throws {
        let shard = shard(of: offset)
        if shards.insert(shard).inserted {
            try db.execute(sql: """
                CREATE VIRTUAL TABLE IF NOT EXISTS \(shardTable(shard)) USING fts5(
                    text, room_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2', columnsize = 0);
                INSERT OR IGNORE INTO search_shards (shard) VALUES (\(shard));
                """)
        }
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO \(shardTable(shard)) (rowid, text, room_id) VALUES (?, ?, ?)")
            .execute(arguments: [Int64(offset), text, room])
    }

    /// An edit: the message is found by its new text.
    static func reindexText(_ db: Database, offset: UInt64, text: String, shards: Set<Int64>) throws {
        let shard = shard(of: offset)
        guard shards.contains(shard) else { return }
        try db.cachedStatement(sql: "UPDATE \(shardTable(shard)) SET text = ? WHERE rowid = ?").execute(arguments: [text, Int64(offset)])
    }

    /// A deletion: the message is no longer found, and its shard is to be merged so that its
    /// words leave the file (`eraseDeletedText()`).
    static func unindexText(_ db: Database, offset: UInt64, shards: Set<Int64>) throws {
        let shard = shard(of: offset)
        guard shards.contains(shard) else { return }
        try db.cachedStatement(sql: "DELETE FROM \(shardTable(shard)) WHERE rowid = ?").execute(arguments: [Int64(offset)])
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO search_erase (shard) VALUES (?)").execute(arguments: [shard])
    }

    /// The shards that exist.
    static func searchShards(_ db: Database) throws -> Set<Int64> {
        Set(try Int64.fetchAll(db, sql: "SELECT shard FROM search_shards"))
    }

    /// Merges the shards where messages were deleted, so that their words are gone from the
    /// file once the write-ahead log is checkpointed (the caller does that).
    static func mergeErasedShards(_ db: Database) throws {
        for shard in try Int64.fetchAll(db, sql: "SELECT shard FROM search_erase") {
            let table = shardTable(shard)
            if try db.tableExists(table) {
                try db.execute(sql: "INSERT INTO \(table) (\(table)) VALUES ('optimize')")
            }
            try db.execute(sql: "DELETE FROM search_erase WHERE shard = ?", arguments: [shard])
        }
    }

    /// Layout 3 to 4: the search index of the messages already stored.
    static func indexStoredMessages(_ db: Database) throws {
        var shards = try searchShards(db)
        let rows = try Row.fetchCursor(db, sql: "SELECT room_id, data FROM blocks ORDER BY id")
        while let row = try rows.next() {
            guard let block = HistoryBlock.decode(row["data"] as Data?) else { throw ProjectionError.database("a history block is damaged; rebuild the projection") }
            let room: Int64 = row["room_id"]
            for message in block.messages {
                guard let text = message.text else { continue }
                try indexText(db, room: room, offset: message.offset, text: text, shards: &shards)
            }
        }
    }

    /// A search query made safe for FTS5: its words (runs of letters and digits, lowercased by
    /// the index), each matched as a word, or as a prefix when `*` follows it, all required.
    /// FTS5's own syntax (quotes, `NEAR`, `AND`, `OR`, column filters, a `*` alone) is not
    /// interpreted: such text is words or nothing.
    /// - Throws: `ProjectionError.invalidQuery` when there are no words, or too many, or the
    ///   query is too long.
    public static func searchExpression(_ query: String) throws(ProjectionError) -> String {
        guard query.utf8.count <= searchQueryBytesMax else {
            throw .invalidQuery("a query is at most \(searchQueryBytesMax) bytes")
        }
        var terms: [String] = []
        var word = ""
        func end(prefix: Bool) {
            guard !word.isEmpty else { return }
            terms.append("\"\(word)\"" + (prefix ? "*" : ""))
            word = ""
        }
        for character in query {
            if character.isLetter || character.isNumber {
                word.append(character)
            } else {
                end(prefix: character == "*")
            }
        }
        end(prefix: false)
        guard !terms.isEmpty else { throw .invalidQuery("the query has no words to search for") }
        guard terms.count <= searchWordsMax else { throw .invalidQuery("a query has at most \(searchWordsMax) words") }
        return terms.joined(separator: " ")
    }

    /// The newest messages, below `before` when given, of the rooms `rooms` (by name) that have
    /// every word of `query`, at most `limit`, newest first.
    /// - Throws: `ProjectionError.invalidQuery` for a query `searchExpression` refuses or a
    ///   limit outside 1...`searchLimitMax`; `.database`.
    public func search(_ query: String, in rooms: Set<String>, before: UInt64? = nil, limit: Int = 20) throws(ProjectionError) -> [HistoryMessage] {
        guard (1...Self.searchLimitMax).contains(limit) else {
            throw .invalidQuery("limit must be in 1...\(Self.searchLimitMax), got \(limit)")
        }
        let expression = try Self.searchExpression(query)
        do {
            return try database.read { db in
                // The rooms' ids: from the writer's cache of them, else one lookup each, or one
                // pass over the table for many rooms.
                var names: [Int64: String] = [:]
                if let cached = roomCache.withLock({ $0 }) {
                    for room in rooms { if let id = cached[room] { names[id] = room } }
                } else if rooms.count <= 64 {
                    let lookup = try db.cachedStatement(sql: "SELECT id FROM rooms WHERE name = ?")
                    for room in rooms { if let id = try Int64.fetchOne(lookup, arguments: [room]) { names[id] = room } }
                } else {
                    for row in try Row.fetchAll(db, sql: "SELECT id, name FROM rooms") where rooms.contains(row[1]) {
                        names[row[0]] = row[1]
                    }
                }
                guard !names.isEmpty else { return [] }
                let bound = Int64(clamping: before ?? UInt64(Int64.max))
                var hits: [(offset: UInt64, room: Int64)] = []
                let shards = try Int64.fetchAll(db, sql: "SELECT shard FROM search_shards WHERE shard <= ? ORDER BY shard DESC",
                                                arguments: [Self.shard(of: UInt64(bound))])
                // A few rooms are filtered by SQLite as it reads the index; many, here.
                let filter = names.count <= 64 ? " AND room_id IN (\(names.keys.map(String.init).joined(separator: ",")))" : ""
                shards: for shard in shards {
                    let cursor = try Row.fetchCursor(db, sql: """
                        SELECT rowid, room_id FROM \(Self.shardTable(shard)) WHERE \(Self.shardTable(shard)) MATCH ? AND rowid < ?\(filter)
                        ORDER BY rowid DESC
                        """, arguments: [expression, bound])
                    while let row = try cursor.next() {
                        let room: Int64 = row[1]
                        guard names[room] != nil else { continue }
                        hits.append((UInt64(row[0] as Int64), room))
                        if hits.count == limit { break shards }
                    }
                }
                var found: [HistoryMessage] = []
                let blocks = try db.cachedStatement(sql: """
                    SELECT data FROM blocks WHERE room_id = ? AND first_offset <= ? ORDER BY first_offset DESC LIMIT 1
                    """)
                for (offset, room) in hits {
                    guard let name = names[room], let row = try Row.fetchOne(blocks, arguments: [room, Int64(offset)]),
                          let message = HistoryBlock.decode(row["data"] as Data?)?.message(at: offset) else { continue }
                    var one = [message.history(room: name)]
                    try Self.annotate(&one, room: room, db)
                    found += one
                }
                return found
            }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("searching: \(error)")
        }
    }
}
