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
                    try Self.annotate(&page, room: roomID, db)
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
                page.reverse()
                try Self.annotate(&page, room: roomID, db)
                return page
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
                for row in try Row.fetchAll(db, sql: "SELECT rooms.name, blocks.data, rooms.id FROM blocks JOIN rooms ON rooms.id = blocks.room_id") {
                    guard let block = HistoryBlock.decode(row[1] as Data?) else { throw ProjectionError.database("damaged block") }
                    let room: String = row[0]
                    var blockMessages = block.messages.map { $0.history(room: room) }
                    try Self.annotate(&blockMessages, room: row[2], db)
                    messages += blockMessages
                }
                return messages.sorted { $0.offset < $1.offset }
            }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("reading history: \(error)")
        }
    }

    /// Adds to `messages` (of one room, in offset order) what they carry besides their block:
    /// the message each replies to and its reactions.
    static func annotate(_ messages: inout [HistoryMessage], room: Int64, _ db: Database) throws {
        guard let first = messages.first?.offset, let last = messages.last?.offset else { return }
        var index: [UInt64: Int] = [:]
        for (position, message) in messages.enumerated() { index[message.offset] = position }
        let range: [DatabaseValueConvertible] = [room, Int64(first), Int64(last)]
        for row in try Row.fetchAll(db, sql: "SELECT offset, reply_to FROM replies WHERE room_id = ? AND offset BETWEEN ? AND ?",
                                    arguments: StatementArguments(range)) {
            if let position = index[UInt64(row[0] as Int64)] { messages[position].replyTo = UInt64(row[1] as Int64) }
        }
        for row in try Row.fetchAll(db, sql: """
            SELECT offset, emoji, user FROM reactions WHERE room_id = ? AND offset BETWEEN ? AND ? ORDER BY id
            """, arguments: StatementArguments(range)) {
            guard let position = index[UInt64(row[0] as Int64)] else { continue }
            let emoji: String = row[1]
            let user: String = row[2]
            if let existing = messages[position].reactions.firstIndex(where: { $0.emoji == emoji }) {
                messages[position].reactions[existing].users.append(user)
            } else {
                messages[position].reactions.append(HistoryReaction(emoji: emoji, users: [user]))
            }
        }
    }

    /// What a user has not read in a room: the messages after `marker` (all of them without
    /// one) that others sent and that are not deleted, and the mentions of the user among them.
    public struct Unread: Sendable, Equatable {
        public var messages: Int
        public var mentions: Int

        public init(messages: Int, mentions: Int) {
            self.messages = messages
            self.mentions = mentions
        }
    }

    /// `Unread` of `user` in each of `rooms` (by name, with the user's read marker), in one read.
    public func unread(of user: String, in rooms: [(room: String, marker: UInt64?)]) throws(ProjectionError) -> [String: Unread] {
        do {
            return try database.read { db in
                var counts: [String: Unread] = [:]
                for (room, marker) in rooms {
                    guard let roomID = try Int64.fetchOne(db, cachedSQL: "SELECT id FROM rooms WHERE name = ?", [room]) else {
                        counts[room] = Unread(messages: 0, mentions: 0)
                        continue
                    }
                    // Markers are message offsets: the first message after one is past it.
                    let after = marker.map { Int64(clamping: $0) } ?? -1
                    var messages = 0
                    let cursor = try Row.fetchCursor(db, sql: """
                        SELECT data FROM blocks WHERE room_id = ? AND last_offset > ? AND first_offset >= COALESCE(
                            (SELECT MAX(first_offset) FROM blocks WHERE room_id = ? AND first_offset <= ?), 0)
                        """, arguments: [roomID, after, roomID, after])
                    while let row = try cursor.next() {
                        guard let block = HistoryBlock.decode(row["data"] as Data?) else { throw ProjectionError.database("damaged block in \(room)") }
                        messages += block.countUnread(after: after, excluding: user)
                    }
                    let mentions = try Int.fetchOne(db, cachedSQL: "SELECT COUNT(*) FROM mentions WHERE user = ? AND room_id = ? AND offset > ?",
                                                    [user, roomID, after]) ?? 0
                    counts[room] = Unread(messages: messages, mentions: mentions)
                }
                return counts
            }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("counting unread messages of \(user): \(error)")
        }
    }
}

extension Int64 {
    fileprivate static func fetchOne(_ db: Database, cachedSQL sql: String, _ arguments: [DatabaseValueConvertible]) throws -> Int64? {
        try Int64.fetchOne(db.cachedStatement(sql: sql), arguments: StatementArguments(arguments))
    }
}

extension Int {
    fileprivate static func fetchOne(_ db: Database, cachedSQL sql: String, _ arguments: [DatabaseValueConvertible]) throws -> Int? {
        try Int.fetchOne(db.cachedStatement(sql: sql), arguments: StatementArguments(arguments))
    }
}
