import Foundation
import GRDB

/// Reading History: pages of a room for scroll-back, and the whole projection for tools and tests.
extension HistoryProjection {
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
