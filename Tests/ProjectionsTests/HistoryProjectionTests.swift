import ChatModel
import Foundation
import GRDB
import Journal
import Logging
import NIOCore
import Testing
@testable import Projections

@Suite struct HistoryProjectionTests {
    func populated() async throws -> (TemporaryDirectory, Journal, HistoryProjection) {
        let directory = try TemporaryDirectory()
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        let alice = UserID("alice")!
        let general = RoomID("general")!
        var events = [ChatEvent(timestampMs: 1, actor: alice, room: general, body: .roomCreated(name: "General", isPrivate: false))]
        for n in 0..<300 {
            events.append(ChatEvent(timestampMs: Int64(10 + n), actor: alice, room: general,
                                    body: .messageSent(clientMessageID: "c\(n)", text: "message \(n)", clientCreatedMs: Int64(n))))
        }
        _ = try await journal.append(contentsOf: events.map(ChatEventCodec.encode))
        let history = try HistoryProjection(path: directory.path + "/history.sqlite")
        try history.apply(try journal.read(from: .zero, maxBytes: 1 << 20))
        return (directory, journal, history)
    }

    @Test func pagesByOffsetNewestBeforeAndAfter() async throws {
        let (directory, journal, history) = try await populated()
        defer { directory.remove() }
        let newest = try history.page(room: "general", limit: 10)
        #expect(newest.map(\.offset) == Array(291...300))
        #expect(newest.last?.text == "message 299" && newest.last?.author == "alice")
        let before = try history.page(room: "general", before: 291, limit: 5)
        #expect(before.map(\.offset) == Array(286...290))
        let after = try history.page(room: "general", after: 1, limit: 3)
        #expect(after.map(\.offset) == [2, 3, 4])
        #expect(try history.page(room: "nowhere").isEmpty)
        #expect(try history.page(room: "general", limit: 200).count == 200)
        #expect(throws: ProjectionError.self) { try history.page(room: "general", limit: 201) }
        #expect(throws: ProjectionError.self) { try history.page(room: "general", limit: 0) }
        // Both: the oldest after `after` below `before`, across blocks, never past `before`.
        #expect(try history.page(room: "general", before: 5, after: 1).map(\.offset) == [2, 3, 4])
        #expect(try history.page(room: "general", before: 150, after: 100, limit: 200).map(\.offset) == Array(101...149))
        #expect(try history.page(room: "general", before: 102, after: 100, limit: 3).map(\.offset) == [101])
        #expect(try history.page(room: "general", before: 100, after: 100).isEmpty)
        await journal.close()
    }

    @Test func editsApplyAndDeletedTextIsGoneFromTheFile() async throws {
        let (directory, journal, history) = try await populated()
        defer { directory.remove() }
        let alice = UserID("alice")!
        let general = RoomID("general")!
        let secretText = "the launch code is 0000"
        let sent = try await journal.append(ChatEventCodec.encode(ChatEvent(
            timestampMs: 500, actor: alice, room: general, body: .messageSent(clientMessageID: "s", text: secretText, clientCreatedMs: 0))))
        _ = try await journal.append(ChatEventCodec.encode(ChatEvent(
            timestampMs: 501, actor: alice, room: general, body: .messageEdited(message: MessageID(5), text: "fixed typo"))))
        try history.apply(try journal.read(from: Offset(301)))
        #expect(try history.page(room: "general", limit: 1).first?.text == secretText)
        _ = try await journal.append(ChatEventCodec.encode(ChatEvent(
            timestampMs: 502, actor: alice, room: general, body: .messageDeleted(message: MessageID(sent.value)))))
        try history.apply(try journal.read(from: Offset(303)))

        try history.eraseDeletedText()
        let deleted = try #require(try history.page(room: "general", limit: 1).first)
        #expect(deleted.offset == sent.value && deleted.text == nil && deleted.deletedMs == 502)
        let edited = try #require(try history.page(room: "general", after: 4, limit: 1).first)
        #expect(edited.text == "fixed typo" && edited.editedMs == 501)
        #expect(try history.nextOffset() == Offset(304))
        // Not merely hidden: the bytes are not in the database files either.
        for suffix in ["", "-wal"] {
            let data = (try? Data(contentsOf: URL(fileURLWithPath: history.path + suffix))) ?? Data()
            #expect(data.range(of: Data(secretText.utf8)) == nil, "deleted text found in history.sqlite\(suffix)")
        }
        await journal.close()
    }

    @Test func aDatabaseOfAnOlderLayoutIsEmptiedAndRebuiltFromZero() async throws {
        let (directory, journal, history) = try await populated()
        defer { directory.remove() }
        let rebuilt = try history.allMessages()
        // A file as the first layout left it: blocks in a WITHOUT ROWID table, no user_version,
        // a checkpoint well into the journal.
        let oldPath = directory.path + "/old-history.sqlite"
        let old = try DatabaseQueue(path: oldPath)
        try await old.write { db in
            try db.execute(sql: """
                CREATE TABLE rooms (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
                CREATE TABLE blocks (room_id INTEGER NOT NULL, first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL,
                    count INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (room_id, first_offset)) WITHOUT ROWID;
                CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), next_offset INTEGER NOT NULL);
                INSERT INTO checkpoint (id, next_offset) VALUES (1, 250);
                """)
        }
        try old.close()
        let reopened = try HistoryProjection(path: oldPath)
        #expect(try reopened.nextOffset() == .zero)
        #expect(try await reopened.database.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") } == HistoryProjection.layoutVersion)
        try reopened.apply(try journal.read(from: .zero, maxBytes: 1 << 20))
        #expect(try reopened.allMessages() == rebuilt)
        // Opening a current file keeps it.
        let again = try HistoryProjection(path: oldPath)
        #expect(try again.nextOffset() == Offset(301))
        await journal.close()
    }

    /// A catch-up defers rooms' partly filled blocks; a crash before they are written loses
    /// only memory: the checkpoint stayed at their earliest change, and replaying from it adds
    /// nothing twice and misses nothing (an edit made before the first deferred append too).
    @Test func aCrashWithDeferredTailsReplaysFromTheirEarliestChange() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        let alice = UserID("alice")!
        let rooms = [RoomID("general")!, RoomID("random")!]
        var events = rooms.map { ChatEvent(timestampMs: 1, actor: alice, room: $0, body: .roomCreated(name: "R", isPrivate: false)) }
        for n in 0..<150 {
            events.append(ChatEvent(timestampMs: Int64(10 + n), actor: alice, room: rooms[n % 2],
                                    body: .messageSent(clientMessageID: "c\(n)", text: "message \(n)", clientCreatedMs: 0)))
        }
        _ = try await journal.append(contentsOf: events.map(ChatEventCodec.encode))  // offsets 0...151
        // An edit of a message in general's deferred tail (offsets 130...150), then more
        // messages: in the next read.
        var later = [ChatEvent(timestampMs: 500, actor: alice, room: rooms[0], body: .messageEdited(message: MessageID(140), text: "edited"))]
        for n in 150..<200 {
            later.append(ChatEvent(timestampMs: Int64(10 + n), actor: alice, room: rooms[n % 2],
                                   body: .messageSent(clientMessageID: "c\(n)", text: "message \(n)", clientCreatedMs: 0)))
        }
        _ = try await journal.append(contentsOf: later.map(ChatEventCodec.encode))  // offsets 152...202

        let reference = try HistoryProjection(path: directory.path + "/reference.sqlite")
        try reference.apply(try journal.read(from: .zero, maxBytes: 1 << 20))

        let path = directory.path + "/history.sqlite"
        let crashed = try HistoryProjection(path: path)
        try crashed.apply(try journal.read(from: .zero, maxBytes: 1 << 20).filter { $0.baseOffset.value < 152 }, deferTails: true)
        try crashed.apply(try journal.read(from: Offset(152), maxBytes: 1 << 20), deferTails: true)
        // Blocks of 64 per room: each room has one full block written and a deferred tail.
        let checkpoint = try crashed.nextOffset()
        #expect(checkpoint < Offset(203), "the checkpoint waits for the deferred tails")
        // The process dies here: a new one opens the file and resumes from the checkpoint.
        let resumed = try HistoryProjection(path: path)
        #expect(try resumed.nextOffset() == checkpoint)
        try resumed.apply(try journal.read(from: .zero, maxBytes: 1 << 20), deferTails: true)
        try resumed.writeDeferredTails()
        #expect(try resumed.nextOffset() == Offset(203))
        #expect(try resumed.allMessages() == reference.allMessages())
        #expect(try resumed.page(room: "general", after: 139, limit: 1).first?.text == "edited")
        await journal.close()
    }

    /// More rooms with partly filled blocks than the tail cache holds: a catch-up then writes
    /// every tail in each transaction (as when following live) and keeps none in memory; the
    /// next transaction reads the tails back from the file, and nothing is lost or doubled.
    @Test func moreTailsThanTheCacheHoldsAreWrittenAtOnce() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        let alice = UserID("alice")!
        let rooms = (0...HistoryProjection.tailCacheRoomsMax).map { RoomID("room-\($0)")! }
        func messages(_ round: Int) -> [ChatEvent] {
            rooms.enumerated().map { index, room in
                ChatEvent(timestampMs: Int64(round), actor: alice, room: room,
                          body: .messageSent(clientMessageID: "c\(round)-\(index)", text: "round \(round)", clientCreatedMs: 0))
            }
        }
        let created = rooms.map { ChatEvent(timestampMs: 1, actor: alice, room: $0, body: .roomCreated(name: "R", isPrivate: false)) }
        let first = try await journal.append(contentsOf: (created + messages(1)).map(ChatEventCodec.encode))
        _ = try await journal.append(contentsOf: messages(2).map(ChatEventCodec.encode))

        let reference = try HistoryProjection(path: directory.path + "/reference.sqlite")
        try reference.apply(try journal.read(from: .zero, maxBytes: 16 << 20))

        let history = try HistoryProjection(path: directory.path + "/history.sqlite")
        let batches = try journal.read(from: .zero, maxBytes: 16 << 20)
        let firstEnd = Offset(first.last.value + 1)
        try history.apply(batches.filter { $0.nextOffset <= firstEnd }, deferTails: true)
        // Too many tails to keep: all written, the checkpoint at the end of the transaction.
        #expect(try history.nextOffset() == firstEnd)
        try history.apply(batches.filter { $0.baseOffset >= firstEnd }, deferTails: true)
        try history.writeDeferredTails()
        #expect(try history.messageCount() == 2 * rooms.count)
        #expect(try history.allMessages() == reference.allMessages())
        #expect(try history.page(room: "room-7", limit: 5).map(\.text) == ["round 1", "round 2"])
        await journal.close()
    }

    @Test func applyingTheSameBatchesTwiceAddsNothing() async throws {
        let (directory, journal, history) = try await populated()
        defer { directory.remove() }
        let before = try history.allMessages()
        try history.apply(try journal.read(from: .zero, maxBytes: 1 << 20))
        #expect(try history.allMessages() == before)
        await journal.close()
    }
}
