import Foundation
import GRDB
import Journal

/// Messages found by offset: search results, and the texts a new search index starts from.
extension HistoryProjection {
    /// The messages of `hits`, in their order, as History has them now: those it does not hold
    /// (yet) and deleted ones are left out.
    /// - Throws: `ProjectionError.database`.
    public func messages(at hits: [SearchHit]) throws(ProjectionError) -> [HistoryMessage] {
        guard !hits.isEmpty else { return [] }
        do {
            return try database.read { db in
                let blocks = try db.cachedStatement(sql: """
                    SELECT data FROM blocks WHERE room_id = ? AND first_offset <= ? ORDER BY first_offset DESC LIMIT 1
                    """)
                var roomIDs: [String: Int64?] = [:]
                var found: [HistoryMessage] = []
                for hit in hits {
                    let roomID: Int64?
                    if let known = roomIDs[hit.room] {
                        roomID = known
                    } else {
                        roomID = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM rooms WHERE name = ?"), arguments: [hit.room])
                        roomIDs[hit.room] = roomID
                    }
                    guard let roomID, let row = try Row.fetchOne(blocks, arguments: [roomID, Int64(clamping: hit.offset)]),
                          let message = HistoryBlock.decode(row["data"] as Data?)?.message(at: hit.offset),
                          message.text != nil
                    else { continue }
                    var one = [message.history(room: hit.room)]
                    try Self.annotate(&one, room: roomID, db)
                    found += one
                }
                return found
            }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("reading searched messages: \(error)")
        }
    }

    /// Calls `body` with every stored message below History's checkpoint that has text (room,
    /// offset, text), in one read, and returns that checkpoint. The texts are History's state
    /// at the checkpoint or, where a catch-up wrote full blocks ahead of it, later (an edit
    /// after the checkpoint may show).
    /// - Throws: `ProjectionError.database`, or what `body` throws.
    public func forEachStoredText(_ body: (String, UInt64, String) throws -> Void) throws -> Offset {
        try database.read { db in
            let checkpoint = try Int64.fetchOne(db, sql: "SELECT next_offset FROM checkpoint WHERE id = 1") ?? 0
            let rows = try Row.fetchCursor(db, sql: "SELECT rooms.name, blocks.data FROM blocks JOIN rooms ON rooms.id = blocks.room_id ORDER BY blocks.id")
            while let row = try rows.next() {
                guard let block = HistoryBlock.decode(row[1] as Data?) else { throw ProjectionError.database("a history block is damaged; rebuild the projection") }
                let room: String = row[0]
                for message in block.messages where message.offset < UInt64(checkpoint) {
                    if let text = message.text { try body(room, message.offset, text) }
                }
            }
            return Offset(UInt64(checkpoint))
        }
    }
}

/// What the search index needs from History: the text an edit or a deletion replaced.
extension HistoryProjection {
    /// The texts the edits and deletions at offsets in `range` replaced, by offset (one read
    /// for a transaction of the search index).
    /// - Throws: `ProjectionError.database`.
    public func replacedTexts(in range: Range<UInt64>) throws(ProjectionError) -> [UInt64: String] {
        do {
            return try database.read { db in
                var texts: [UInt64: String] = [:]
                let rows = try Row.fetchCursor(db, sql: "SELECT event, text FROM replaced WHERE event >= ? AND event < ?",
                                               arguments: [Int64(clamping: range.lowerBound), Int64(clamping: range.upperBound)])
                while let row = try rows.next() { texts[UInt64(row[0] as Int64)] = row[1] }
                return texts
            }
        } catch {
            throw .database("reading the texts edits replaced: \(error)")
        }
    }

    /// `replacedTexts(in:)` for the offsets of `batches`.
    public func replacedTexts(of batches: [RecordBatch]) throws(ProjectionError) -> [UInt64: String] {
        guard let first = batches.first?.baseOffset, let end = batches.last?.nextOffset else { return [:] }
        return try replacedTexts(in: first.value..<end.value)
    }

    /// Below this offset History may not have the texts edits and deletions replaced (it let
    /// them go, or never recorded them): a search index that still needs any is seeded anew.
    /// - Throws: `ProjectionError.database`.
    public func replacedFloor() throws(ProjectionError) -> Offset {
        do {
            return Offset(UInt64(try database.read { db in
                try Int64.fetchOne(db, sql: "SELECT offset FROM replaced_floor WHERE id = 1") ?? 0
            }))
        } catch {
            throw .database("reading the replaced texts' floor: \(error)")
        }
    }

    /// Forgets the replaced texts of the events below `offset` (the search index has applied
    /// them), and erases them from the files (a deleted message's text is among them).
    /// - Throws: `ProjectionError.database`.
    public func pruneReplaced(below offset: Offset) throws(ProjectionError) {
        let pruned: Int
        do {
            pruned = try database.write { db in
                try db.execute(sql: "DELETE FROM replaced WHERE event < ?", arguments: [Int64(clamping: offset.value)])
                let pruned = db.changesCount
                try db.execute(sql: "UPDATE replaced_floor SET offset = MAX(offset, ?) WHERE id = 1", arguments: [Int64(clamping: offset.value)])
                return pruned
            }
        } catch {
            throw .database("forgetting replaced texts: \(error)")
        }
        guard pruned > 0 else { return }
        needsErasure.withLock { $0 = true }
        try eraseDeletedText()
    }
}
