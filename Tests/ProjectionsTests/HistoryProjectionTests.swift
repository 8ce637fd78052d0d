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
        // History keeps the deleted text for the search index until the index has applied the
        // deletion (FORMAT.md §10), then forgets and erases it.
        #expect(try history.replacedTexts(in: 303..<304)[303] == secretText)
        try history.pruneReplaced(below: Offset(304))
        #expect(try history.replacedTexts(in: 303..<304)[303] == nil)
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

/// What messages carry besides their block (replies, reactions, mentions) and the unread counts.
@Suite struct HistoryAnnotationsTests {
    let alice = UserID("alice")!
    let bob = UserID("bob")!
    let general = RoomID("general")!

    func event(_ actor: UserID, _ body: ChatEvent.Body) -> ChatEvent {
        ChatEvent(timestampMs: 5, actor: actor, room: general, body: body)
    }

    /// 0 created, 1 "hi @bob" (alice), 2 reply to 1 (bob), 3 "@bob again" (alice), 4 👍 on 1 by bob,
    /// 5 🎉 on 1 by alice, 6 👍 on 1 by alice, 7 👍 off 1 by bob, 8 3 deleted, 9 "plain" (alice),
    /// 10 edit of 9 to mention bob, 11 bob's own "@bob".
    var events: [ChatEvent] {
        [
            event(alice, .roomCreated(name: "G", isPrivate: false)),
            event(alice, .messageSent(clientMessageID: "1", text: "hi @bob!", clientCreatedMs: 0)),
            event(bob, .messageSent(clientMessageID: "2", text: "hello", clientCreatedMs: 0, replyTo: MessageID(1))),
            event(alice, .messageSent(clientMessageID: "3", text: "@bob again", clientCreatedMs: 0)),
            event(bob, .reactionAdded(message: MessageID(1), emoji: "👍")),
            event(alice, .reactionAdded(message: MessageID(1), emoji: "🎉")),
            event(alice, .reactionAdded(message: MessageID(1), emoji: "👍")),
            event(bob, .reactionRemoved(message: MessageID(1), emoji: "👍")),
            event(alice, .messageDeleted(message: MessageID(3))),
            event(alice, .messageSent(clientMessageID: "9", text: "plain", clientCreatedMs: 0)),
            event(alice, .messageEdited(message: MessageID(9), text: "plain @bob")),
            event(bob, .messageSent(clientMessageID: "11", text: "me @bob", clientCreatedMs: 0)),
        ]
    }

    @Test func repliesReactionsMentionsAndUnreadCounts() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        _ = try await journal.append(contentsOf: events.map(ChatEventCodec.encode))
        let history = try HistoryProjection(path: directory.path + "/history.sqlite")
        // One event per transaction and all at once give the same.
        let oneByOne = try HistoryProjection(path: directory.path + "/one-by-one.sqlite")
        let batches = try journal.read(from: .zero, maxBytes: 1 << 20)
        try history.apply(batches)
        for offset in 0..<UInt64(events.count) { try oneByOne.apply(try journal.read(from: Offset(offset), maxBytes: 1 << 20)) }
        #expect(try oneByOne.allMessages() == history.allMessages())
        let page = try history.page(room: "general")
        #expect(page.map(\.offset) == [1, 2, 3, 9, 11])
        #expect(page.map(\.replyTo) == [nil, 1, nil, nil, nil])
        #expect(page[0].reactions == [HistoryReaction(emoji: "🎉", users: ["alice"]), HistoryReaction(emoji: "👍", users: ["alice"])])
        #expect(page[1...].allSatisfy { $0.reactions.isEmpty })
        // bob: unread are alice's 1 and 9 (3 is deleted, 2 and 11 are his); mentions in 1 and
        // 9 (3's went with it; his own does not count).
        let counts = try history.unread(of: "bob", in: [("general", nil), ("nowhere", nil)])
        #expect(counts["general"] == HistoryProjection.Unread(messages: 2, mentions: 2))
        #expect(counts["nowhere"] == HistoryProjection.Unread(messages: 0, mentions: 0))
        #expect(try history.unread(of: "bob", in: [("general", 1)])["general"] == HistoryProjection.Unread(messages: 1, mentions: 1))
        #expect(try history.unread(of: "bob", in: [("general", 11)])["general"] == HistoryProjection.Unread(messages: 0, mentions: 0))
        #expect(try history.unread(of: "alice", in: [("general", nil)])["general"] == HistoryProjection.Unread(messages: 2, mentions: 0))

        // A layout-3 file (no replies, reactions or mentions tables) is migrated, not emptied:
        // its mentions are found in its messages.
        try await history.database.write { db in
            try db.execute(sql: "DROP TABLE replies; DROP TABLE reactions; DROP TABLE mentions; PRAGMA user_version = 3")
        }
        let migrated = try HistoryProjection(path: directory.path + "/history.sqlite")
        #expect(try migrated.nextOffset() == Offset(UInt64(events.count)))
        #expect(try migrated.unread(of: "bob", in: [("general", nil)])["general"] == HistoryProjection.Unread(messages: 2, mentions: 2))
        #expect(try migrated.page(room: "general").map(\.text) == page.map(\.text))
        await journal.close()
    }
}
