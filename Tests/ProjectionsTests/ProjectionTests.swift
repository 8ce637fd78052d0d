import ChatModel
import Foundation
import GRDB
import Journal
import Logging
import NIOCore
import Testing

@testable import Projections

@Suite struct RoomStateSnapshotTests {
    func sampleState() async throws -> RoomState {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 7)
        try await workload.append(2000, to: journal)
        await journal.close()
        return workload.state
    }

    @Test func snapshotRoundTripsTheState() async throws {
        let state = try await sampleState()
        #expect(state.rooms.count > 3)
        let bytes = RoomStateSnapshot.encode(state, nextOffset: Offset(2000))
        let (decoded, next) = try RoomStateSnapshot.decode(bytes, limits: state.limits)
        #expect(decoded == state)
        #expect(next == Offset(2000))
        #expect(RoomStateSnapshot.encode(decoded, nextOffset: next) == bytes, "equal states give equal bytes")
    }

    /// A small state (fewer payload bytes than a limit's value, 4,096 for message bytes): the
    /// limits were read as item counts and such a snapshot was refused as damaged.
    @Test func aSmallStateRoundTripsToo() throws {
        var state = RoomState()
        state.apply(ChatEvent(timestampMs: 1, actor: UserID("a")!, room: RoomID("r")!, body: .roomCreated(name: "R", isPrivate: false)), at: 0)
        let bytes = RoomStateSnapshot.encode(state, nextOffset: Offset(1))
        #expect(bytes.readableBytes < state.limits.messageBytesMax)
        let (decoded, next) = try RoomStateSnapshot.decode(bytes, limits: state.limits)
        #expect(decoded == state && next == Offset(1))
        #expect(try RoomStateSnapshot.decode(RoomStateSnapshot.encode(RoomState(), nextOffset: .zero), limits: ChatLimits()).1 == .zero)
    }

    @Test func everyBitFlipOfASnapshotIsRefused() throws {
        var state = RoomState()
        state.apply(ChatEvent(timestampMs: 1, actor: UserID("a")!, room: RoomID("r")!, body: .roomCreated(name: "R", isPrivate: true)), at: 0)
        state.apply(ChatEvent(timestampMs: 2, actor: UserID("a")!, room: RoomID("r")!, body: .messageSent(clientMessageID: "c", text: "t", clientCreatedMs: 0)), at: 1)
        let bytes = Array(RoomStateSnapshot.encode(state, nextOffset: Offset(2)).readableBytesView)
        for byte in bytes.indices {
            for bit in 0..<8 {
                var flipped = bytes
                flipped[byte] ^= UInt8(1 << bit)
                #expect(throws: SnapshotError.self, "bit \(bit) of byte \(byte)") {
                    try RoomStateSnapshot.decode(ByteBuffer(bytes: flipped), limits: state.limits)
                }
            }
        }
        for length in 0..<bytes.count {
            #expect(throws: SnapshotError.self) { try RoomStateSnapshot.decode(ByteBuffer(bytes: bytes[..<length]), limits: state.limits) }
        }
    }

    @Test func aSnapshotMadeWithOtherLimitsIsRefused() throws {
        let bytes = RoomStateSnapshot.encode(RoomState(), nextOffset: Offset(5))
        var other = ChatLimits()
        other.clientMessageIDWindow += 1
        #expect(throws: SnapshotError.self) { try RoomStateSnapshot.decode(bytes, limits: other) }
    }

    @Test func aCorruptOrMissingSnapshotFallsBackToFullReplay() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 3)
        try await workload.append(1500, to: journal)
        let paths = ProjectionPaths(journalDirectory: directory.journal)

        let first = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet)
        #expect(first.roomState?.nextOffset == .zero, "no snapshot yet: starts at 0")
        try first.catchUp()
        #expect(first.roomState?.state == workload.state)

        // A fresh snapshot: the next runner starts at its offset.
        let second = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet)
        #expect(second.roomState?.nextOffset == Offset(1500))

        // Damage it: the next runner replays from 0 and ends with the same state.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: paths.roomStateSnapshot))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: paths.roomStateSnapshot))
        let third = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet)
        #expect(third.roomState?.nextOffset == .zero)
        try third.catchUp()
        #expect(third.roomState?.state == workload.state)
        await journal.close()
    }

    @Test func aStartUpWithNothingToReplayLeavesTheSnapshotAlone() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 5)
        try await workload.append(500, to: journal)
        let paths = ProjectionPaths(journalDirectory: directory.journal)
        try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet).catchUp()
        func modified() throws -> Date? {
            try FileManager.default.attributesOfItem(atPath: paths.roomStateSnapshot)[.modificationDate] as? Date
        }
        let past = Date(timeIntervalSince1970: 1_000_000)
        try FileManager.default.setAttributes([.modificationDate: past], ofItemAtPath: paths.roomStateSnapshot)

        // Caught up from the snapshot with nothing new: the file is not written again.
        try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet).catchUp()
        #expect(try modified() == past)
        // With new events it is.
        try await workload.append(10, to: journal)
        let runner = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet)
        try runner.catchUp()
        #expect(try modified() != past)
        #expect(try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet).roomState?.state == workload.state)
        await journal.close()
    }
}

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

@Suite struct ProjectionRunnerTests {
    @Test func rebuildFromZeroEqualsIncrementalProjection() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        let paths = ProjectionPaths(journalDirectory: directory.journal)
        let incremental = try ProjectionRunner(journal: journal, paths: paths, logger: .quiet)
        incremental.readBytesMax = 2048  // many small History transactions
        var workload = Workload(seed: 11)
        for _ in 0..<20 {
            try await workload.append(250, to: journal)
            try incremental.catchUp()
        }
        #expect(incremental.roomState?.state == workload.state)

        let rebuiltPaths = ProjectionPaths(journalDirectory: directory.path + "/rebuilt")
        try FileManager.default.createDirectory(atPath: directory.path + "/rebuilt", withIntermediateDirectories: true)
        let rebuilt = try ProjectionRunner(journal: journal, paths: rebuiltPaths, logger: .quiet)
        try rebuilt.catchUp()
        #expect(rebuilt.roomState?.state == incremental.roomState?.state)
        let messages = try #require(try incremental.history?.allMessages())
        #expect(messages.count > 1000)
        #expect(messages.contains { $0.text == nil } && messages.contains { $0.editedMs != nil })
        #expect(try rebuilt.history?.allMessages() == messages)
        for room in workload.rooms {
            #expect(try rebuilt.history?.page(room: room.value, limit: 200) == incremental.history?.page(room: room.value, limit: 200))
        }
        await journal.close()
    }

    @Test func aMalformedEventStopsReplayNamingItsOffset() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 1)
        try await workload.append(10, to: journal)
        _ = try await journal.append(ByteBuffer(bytes: [1, 7, 0]))  // a message_sent cut short
        _ = try await journal.append(ByteBuffer(bytes: [9, 1, 2, 3]))  // a future version: skipped
        let runner = try ProjectionRunner(journal: journal, paths: ProjectionPaths(journalDirectory: directory.journal), logger: .quiet)
        #expect {
            try runner.catchUp()
        } throws: { error in
            guard case ProjectionError.malformedEvent(let offset, _) = error else { return false }
            return offset == Offset(10)
        }
        await journal.close()
    }
}

@Suite struct HistoryBlockTests {
    static func message(_ offset: UInt64, text: String? = "hello wörld 👋") -> HistoryBlock.Message {
        HistoryBlock.Message(offset: offset, author: "user-\(offset % 7)", clientMessageID: "c-\(offset)", text: text,
                             clientCreatedMs: Int64(offset) * 10, sentMs: Int64(offset) * 10 + 3,
                             editedMs: offset % 5 == 0 ? 99 : nil, deletedMs: nil,
                             clientCreatedText: offset % 3 == 1 ? "1970-01-01T00:00:00.0\(offset % 10)0Z" : nil)
    }

    @Test func encodedMessagesRoundTripAndMatchTheFormat() {
        let messages: [HistoryBlock.Message] = (0..<10).map { (index: Int) in
            let text: String? = index == 4 ? nil : "text \(index) ✓"
            return Self.message(UInt64(index * 3 + 1), text: text)
        }
        let block = HistoryBlock(messages: messages)
        #expect(block.count == 10 && block.firstOffset == 1 && block.lastOffset == 28)
        #expect(block.messages == messages)
        let decoded = HistoryBlock.decode(block.encoded())
        #expect(decoded == block && decoded?.messages == messages)
        // FORMAT.md §10, first message field by field.
        let bytes = Array(HistoryBlock(messages: [Self.message(5, text: "hi")]).encoded())
        var expected: [UInt8] = [1, 0]
        expected += [5, 0, 0, 0, 0, 0, 0, 0]  // offset
        expected += [53, 0, 0, 0, 0, 0, 0, 0]  // sent
        expected += [50, 0, 0, 0, 0, 0, 0, 0]  // client created
        expected += [99, 0, 0, 0, 0, 0, 0, 0]  // edited
        expected += [0, 0, 0, 0, 0, 0, 0, 0x80]  // not deleted
        expected += [6, 0] + Array("user-5".utf8)
        expected += [3, 0] + Array("c-5".utf8)
        expected += [2, 0, 0, 0] + Array("hi".utf8)
        expected += [0xFF, 0xFF]  // no client time text: the client sent a number
        #expect(bytes == expected)
        let withText = Array(HistoryBlock(messages: [Self.message(4, text: "hi")]).encoded())
        #expect(Array(withText.suffix(2 + 24)) == [24, 0] + Array("1970-01-01T00:00:00.040Z".utf8))
    }

    @Test func appendingFromBytesEqualsAppendingAMessage() {
        var fromBytes = HistoryBlock()
        for offset in [UInt64(3), 9, 10] {
            let message = Self.message(offset)
            message.withFieldBytes { author, clientMessageID, text, createdText in
                fromBytes.append(offset: offset, sentMs: message.sentMs, clientCreatedMs: message.clientCreatedMs,
                                 editedMs: message.editedMs, author: author, clientMessageID: clientMessageID, text: text,
                                 clientCreatedText: createdText)
            }
        }
        #expect(fromBytes == HistoryBlock(messages: [3, 9, 10].map { Self.message($0) }))
    }

    @Test func updateChangesOneMessageInPlace() {
        let messages = (1...6).map { Self.message(UInt64($0 * 2)) }
        var block = HistoryBlock(messages: messages)
        #expect(block.update(offset: 6) { $0.text = "a much longer text than before, to move the messages after it"; $0.editedMs = 7 })
        #expect(block.update(offset: 12) { $0.text = nil; $0.deletedMs = 8 })
        #expect(!block.update(offset: 7) { $0.text = "absent" })
        #expect(!block.update(offset: 13) { $0.text = "past the end" })
        var expected = messages
        expected[2].text = "a much longer text than before, to move the messages after it"
        expected[2].editedMs = 7
        expected[5].text = nil
        expected[5].deletedMs = 8
        #expect(block.messages == expected)
        #expect(HistoryBlock.decode(block.encoded()) == block)
    }

    @Test func damagedBlocksAreRefused() {
        let good = Array(HistoryBlock(messages: [Self.message(1), Self.message(2)]).encoded())
        #expect(HistoryBlock.decode(Data(good)) != nil)
        // Every truncation, and anything after the last message.
        for length in 0..<good.count { #expect(HistoryBlock.decode(Data(good[..<length])) == nil) }
        #expect(HistoryBlock.decode(Data(good + [0])) == nil)
        // A count over the capacity; offsets that do not increase.
        var overfull = good
        overfull[0] = UInt8(HistoryBlock.capacity + 1)
        #expect(HistoryBlock.decode(Data(overfull)) == nil)
        let repeated = Array(HistoryBlock(messages: [Self.message(1)]).encoded())
        var twice = repeated
        twice[0] = 2
        twice += repeated.dropFirst(2)
        #expect(HistoryBlock.decode(Data(twice)) == nil)
        #expect(HistoryBlock.decode(nil) == nil)
    }
}
