import GRDB

/// Searching: a query made safe for FTS5, then the shards read newest first.
extension SearchProjection {
    /// A search query made safe for FTS5: its words, each matched as a word, or as a prefix when
    /// `*` follows it, all required. A word is a run of letters, digits and the marks that
    /// combine with them (as FTS5's `unicode61` tokenizer reads a token); the index folds case
    /// and diacritics. FTS5's own syntax (quotes, `NEAR`, `AND`, `OR`, column filters, a `*`
    /// alone) is not interpreted: such text is words or nothing.
    /// - Throws: `ProjectionError.invalidQuery` when there are no words, or too many, or the
    ///   query is too long.
    public static func expression(_ query: String) throws(ProjectionError) -> String {
        guard query.utf8.count <= queryBytesMax else {
            throw .invalidQuery("a query is at most \(queryBytesMax) bytes")
        }
        var terms: [String] = []
        var word = String.UnicodeScalarView()
        func end(prefix: Bool) {
            guard !word.isEmpty else { return }
            terms.append("\"\(String(word))\"" + (prefix ? "*" : ""))
            word = String.UnicodeScalarView()
        }
        for scalar in query.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                 .decimalNumber, .letterNumber, .otherNumber, .nonspacingMark, .spacingMark, .enclosingMark, .privateUse:
                word.append(scalar)
            default:
                end(prefix: scalar == "*")
            }
        }
        end(prefix: false)
        guard !terms.isEmpty else { throw .invalidQuery("the query has no words to search for") }
        guard terms.count <= wordsMax else { throw .invalidQuery("a query has at most \(wordsMax) words") }
        return terms.joined(separator: " ")
    }

    /// The newest messages, below `before` when given, of the rooms `rooms` (by name) that have
    /// every word of `query`, at most `limit`, newest first: their ids and rooms (History has
    /// their content, `HistoryProjection.messages(at:)`).
    /// - Throws: `ProjectionError.invalidQuery` for a query `expression` refuses or a limit
    ///   outside 1...`limitMax`; `.database`.
    public func search(_ query: String, in rooms: Set<String>, before: UInt64? = nil, limit: Int = 20) throws(ProjectionError) -> [SearchHit] {
        guard (1...Self.limitMax).contains(limit) else {
            throw .invalidQuery("limit must be in 1...\(Self.limitMax), got \(limit)")
        }
        let expression = try Self.expression(query)
        do {
            return try database.read { db in
                // The rooms' ids: from the writer's cache of them, else one lookup each, or one
                // pass over the table for many rooms.
                var names: [Int64: String] = [:]
                if let cached = known.withLock({ $0?.rooms }) {
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
                let shards = try Int64.fetchAll(db, sql: "SELECT shard FROM shards WHERE shard <= ? ORDER BY shard DESC",
                                                arguments: [Self.shard(of: UInt64(bound))])
                // A few rooms are filtered by SQLite as it reads the index; many, here.
                let filter = names.count <= 64 ? " AND messages.room_id IN (\(names.keys.map(String.init).joined(separator: ",")))" : ""
                var hits: [SearchHit] = []
                for shard in shards {
                    let table = Self.table(shard)
                    let cursor = try Row.fetchCursor(db, sql: """
                        SELECT \(table).rowid, messages.room_id FROM \(table) JOIN messages ON messages.offset = \(table).rowid
                        WHERE \(table) MATCH ? AND \(table).rowid < ?\(filter) ORDER BY \(table).rowid DESC
                        """, arguments: [expression, bound])
                    while let row = try cursor.next() {
                        guard let room = names[row[1]] else { continue }
                        hits.append(SearchHit(offset: UInt64(row[0] as Int64), room: room))
                        if hits.count == limit { return hits }
                    }
                }
                return hits
            }
        } catch let error as ProjectionError {
            throw error
        } catch let error as DatabaseError where error.message?.hasPrefix("fts5:") == true {
            // A word the tokenizer splits in two (a character it reads as a separator that this
            // build's Unicode calls a letter) would be a phrase, which this index cannot match.
            throw .invalidQuery("the query cannot be searched: \(error.message ?? "")")
        } catch {
            throw .database("searching: \(error)")
        }
    }
}
