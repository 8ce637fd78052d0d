import ChatModel
import Foundation
import GRDB
import Journal
import Testing
@testable import Projections

@Suite struct SearchProjectionTests {
    let alice = UserID("alice")!
    let general = RoomID("general")!
    let secret = RoomID("secret")!

    func send(_ room: RoomID, _ text: String) -> ChatEvent {
        ChatEvent(timestampMs: 5, actor: alice, room: room, body: .messageSent(clientMessageID: "c\(text.utf8.count)", text: text, clientCreatedMs: 0))
    }

    func wordsOf(_ text: String) -> Set<String> {
        Set(text.lowercased().split { !($0.isLetter || $0.isNumber) }.map(String.init))
    }

    /// The offsets of the messages History holds that have `word`, newest first: what the
    /// index must answer, computed without it.
    func expected(_ word: String, in history: HistoryProjection, rooms: Set<String>, limit: Int) throws -> [UInt64] {
        try history.allMessages().filter { message in
            rooms.contains(message.room) && message.text.map { wordsOf($0).contains(word) } == true
        }.map(\.offset).sorted(by: >).prefix(limit).map { $0 }
    }

    func integrityChecked(_ search: SearchProjection) throws {
        try search.database.write { db in
            for shard in try Int64.fetchAll(db, sql: "SELECT shard FROM shards") {
                let table = SearchProjection.table(shard)
                try db.execute(sql: "INSERT INTO \(table) (\(table), rank) VALUES ('integrity-check', 1)")
            }
        }
    }

    @Test func findsTheNewestOfTheGivenRoomsWithEveryWordAndFollowsEditsAndDeletions() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        let words = "the launch code is zzyzxquokka"
        _ = try await journal.append(contentsOf: [
            ChatEvent(timestampMs: 1, actor: alice, room: general, body: .roomCreated(name: "G", isPrivate: false)),
            send(general, "The release is on Friday"),  // 1
            send(secret, "release notes"),  // 2
            send(general, "Réléase moved to Monday"),  // 3: case and diacritics fold
            send(general, words),  // 4
        ].map(ChatEventCodec.encode))
        let history = try HistoryProjection(path: directory.path + "/history.sqlite")
        let search = try SearchProjection(path: directory.path + "/search.sqlite")
        try history.apply(try journal.read(from: .zero))
        try search.apply(try journal.read(from: .zero), history: history)
        _ = try await journal.append(ChatEventCodec.encode(ChatEvent(timestampMs: 6, actor: alice, room: general,
                                                                     body: .messageEdited(message: MessageID(1), text: "The launch is on Friday"))))
        // The index applies an edit of an earlier transaction's message once History has: it
        // takes out the words History replaced.
        #expect(throws: ProjectionError.self) { try search.apply(try journal.read(from: Offset(5)), history: history) }
        try history.apply(try journal.read(from: Offset(5)))
        try search.apply(try journal.read(from: Offset(5)), history: history)
        #expect(try search.nextOffset() == Offset(6))
        let both: Set<String> = ["general", "secret"]
        #expect(try search.search("release", in: both).map(\.offset) == [3, 2])
        #expect(try search.search("release", in: ["general"]).map(\.offset) == [3])
        #expect(try search.search("release", in: ["general"]).first?.room == "general")
        #expect(try search.search("release", in: both, before: 3).map(\.offset) == [2])
        #expect(try search.search("release", in: both, limit: 1).map(\.offset) == [3])
        #expect(try search.search("launch friday", in: both).map(\.offset) == [1], "the edit's words, every word")
        #expect(try search.search("lau* fri*", in: both).map(\.offset) == [1], "prefixes, every word")
        #expect(try search.search("launch", in: both).map(\.offset) == [4, 1])
        #expect(try search.search("release", in: []).isEmpty)
        #expect(try search.search("release", in: ["nowhere"]).isEmpty)

        // The words of a deleted message are gone from the files, not only from the results:
        // the index's, and History's (which kept the text for the index until it applied the
        // deletion).
        let files = [search.path, search.path + "-wal", history.path, history.path + "-wal"]
        func holding(_ word: String) -> Bool {
            files.contains { (try? Data(contentsOf: URL(fileURLWithPath: $0)))?.range(of: Data(word.utf8)) != nil }
        }
        #expect(holding("zzyzxquokka"), "the check can fail")
        _ = try await journal.append(ChatEventCodec.encode(ChatEvent(timestampMs: 7, actor: alice, room: general,
                                                                     body: .messageDeleted(message: MessageID(4)))))
        try history.apply(try journal.read(from: Offset(6)))
        try history.eraseDeletedText()
        #expect(try history.replacedTexts(in: 6..<7)[6] == words)
        #expect(holding("zzyzxquokka"), "History keeps the text until the index has taken its words out")
        try search.apply(try journal.read(from: Offset(6)), history: history)
        try search.eraseDeletedText()
        try history.pruneReplaced(below: try search.nextOffset())
        #expect(try history.replacedTexts(in: 6..<7)[6] == nil)
        #expect(try search.search("zzyzxquokka", in: both).isEmpty)
        #expect(!holding("zzyzxquokka"))
        try integrityChecked(search)
        await journal.close()
    }

    /// Applied in small transactions, all at once, twice, and seeded from History: the same
    /// answers, equal to History's messages searched by hand.
    @Test func everyWayOfApplyingTheJournalAnswersAsHistorySays() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 5)
        try await workload.append(1500, to: journal)
        let end = journal.committedOffset
        let history = try HistoryProjection(path: directory.path + "/history.sqlite")
        try history.apply(try journal.read(from: .zero, maxBytes: 16 << 20))
        let whole = try SearchProjection(path: directory.path + "/whole.sqlite")
        try whole.apply(try journal.read(from: .zero, maxBytes: 16 << 20), history: history)
        let stepwise = try SearchProjection(path: directory.path + "/stepwise.sqlite")
        var next = Offset.zero
        while next < end {
            let batches = try journal.read(from: next, maxBytes: 4 << 10)
            try stepwise.apply(batches, history: history)
            next = try #require(batches.last?.nextOffset)
        }
        // Applied again after a restart (the checkpoint moved with the index): nothing twice.
        let replayed = try SearchProjection(path: directory.path + "/replayed.sqlite")
        try replayed.apply(try journal.read(from: .zero, maxBytes: 16 << 20), history: history)
        try SearchProjection(path: directory.path + "/replayed.sqlite").apply(try journal.read(from: .zero, maxBytes: 16 << 20), history: history)
        // And one seeded from History, then following the journal from History's checkpoint.
        let seeded = try SearchProjection(path: directory.path + "/seeded.sqlite")
        try seeded.seed(from: history)
        #expect(try seeded.nextOffset() == end)
        // Seeded from a History in the middle of a catch-up (full blocks written ahead of its
        // checkpoint, which stays at its earliest unwritten change: the seed writes the rest
        // first), then following the journal once History has gone on.
        let partial = try HistoryProjection(path: directory.path + "/partial.sqlite")
        var read = Offset.zero
        while read.value < end.value / 2 {
            let batches = try journal.read(from: read, maxBytes: 8 << 10)
            try partial.apply(batches, deferTails: true)
            read = try #require(batches.last?.nextOffset)
        }
        let midway = try SearchProjection(path: directory.path + "/midway.sqlite")
        try midway.seed(from: partial)
        let seededAt = try midway.nextOffset()
        #expect(seededAt == read)
        try partial.apply(try journal.read(from: read, maxBytes: 16 << 20))
        try midway.apply(try journal.read(from: seededAt, maxBytes: 16 << 20), history: partial)

        let rooms = Set(workload.rooms.map(\.value))
        let queries = ["hello", "edited", "from", "re", "user3", "user1*"] + (0..<20).map { "\($0 * 4999)" }
        var found = 0
        for query in queries {
            let answer = try whole.search(query, in: rooms, limit: 50).map(\.offset)
            if !query.hasSuffix("*") {
                #expect(answer == (try expected(query, in: history, rooms: rooms, limit: 50)), "\(query)")
            }
            found += answer.count
            for other in [stepwise, replayed, seeded, midway] {
                #expect(try other.search(query, in: rooms, limit: 50).map(\.offset) == answer, "\(query)")
            }
            let some = Set(rooms.prefix(2))
            #expect(try whole.search(query, in: some, limit: 7).map(\.offset) == (try stepwise.search(query, in: some, limit: 7).map(\.offset)))
        }
        #expect(found > 100, "the queries find something")
        for index in [whole, stepwise, replayed, seeded, midway] { try integrityChecked(index) }
        await journal.close()
    }

    /// FTS5's count of segments written (flushes of its pending words) for a shard: the third
    /// varint of the structure record (`%_data`, id 10), after a 4-byte cookie.
    func segmentsWritten(_ search: SearchProjection, shard: Int64) throws -> UInt64 {
        let block = try #require(try search.database.read { db in
            try Data.fetchOne(db, sql: "SELECT block FROM \(SearchProjection.table(shard))_data WHERE id = 10")
        })
        var index = block.startIndex + 4
        var values: [UInt64] = []
        while values.count < 3, index < block.endIndex {
            var value: UInt64 = 0
            while index < block.endIndex {
                let byte = block[index]
                index += 1
                value = value << 7 | UInt64(byte & 0x7F)
                if byte < 0x80 { break }
            }
            values.append(value)
        }
        return try #require(values.count == 3 ? values[2] : nil)
    }

    /// A transaction's edits and deletions (of messages of earlier transactions and of its own,
    /// several of one message, an edit then a deletion) answer as History says, as the same
    /// events one transaction each do, and cost FTS5 one segment, not one per change.
    @Test func aTransactionsEditsAndDeletionsAnswerAsInOrderAndWriteOneSegment() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        _ = try await journal.append(contentsOf: ([ChatEvent(timestampMs: 1, actor: alice, room: general, body: .roomCreated(name: "G", isPrivate: false))]
            + (1...300).map { send(general, "original w\($0) common") }).map(ChatEventCodec.encode))
        let history = try HistoryProjection(path: directory.path + "/history.sqlite")
        let whole = try SearchProjection(path: directory.path + "/whole.sqlite")
        try history.apply(try journal.read(from: .zero))
        try whole.apply(try journal.read(from: .zero), history: history)
        let first = journal.committedOffset
        func edit(_ message: UInt64, _ text: String) -> ChatEvent {
            ChatEvent(timestampMs: 6, actor: alice, room: general, body: .messageEdited(message: MessageID(message), text: text))
        }
        func delete(_ message: UInt64) -> ChatEvent {
            ChatEvent(timestampMs: 7, actor: alice, room: general, body: .messageDeleted(message: MessageID(message)))
        }
        var events: [ChatEvent] = []
        for message in stride(from: 1 as UInt64, through: 300, by: 3) {
            events.append(edit(message, "first w\(message) common"))
            let fresh = first.value + UInt64(events.count)
            events.append(send(general, "fresh n\(fresh) common"))
            events.append(edit(fresh, "changed n\(fresh)"))
            events.append(message % 2 == 0 ? delete(message) : edit(message, "second w\(message) common"))
            if message % 5 == 0 { events.append(delete(fresh)) }
        }
        // Sent and deleted in one transaction: its words never reach the index's files.
        let vanishing = first.value + UInt64(events.count)
        events += [send(general, "qqvanishedqq common"), edit(vanishing, "qqvanishedqq still"), delete(vanishing),
                   send(general, "qqkeptqq")]
        // A room id that is not plain ASCII: its messages are decoded in full, not read from
        // their bytes; edited in the transaction, indexed with the last text all the same.
        let café = try #require(RoomID("café-ü"))
        let accented = first.value + UInt64(events.count)
        events += [send(café, "accented before"), edit(accented, "accented after")]
        _ = try await journal.append(contentsOf: events.map(ChatEventCodec.encode))
        let end = journal.committedOffset
        try history.apply(try journal.read(from: first))
        let before = try segmentsWritten(whole, shard: 0)
        try whole.apply(try journal.read(from: first), history: history)
        #expect(try segmentsWritten(whole, shard: 0) - before <= 2, "the changes, then the commit")
        let automerge = try await whole.database.read { db in
            try Int.fetchOne(db, sql: "SELECT v FROM \(SearchProjection.table(0))_config WHERE k = 'automerge'")
        }
        #expect(automerge == SearchProjection.automerge)
        #expect(try whole.search("accented after", in: ["café-ü"]).map(\.offset) == [accented])
        #expect(try whole.search("before", in: ["café-ü"]).isEmpty)
        let files = [whole.path, whole.path + "-wal"]
        #expect(!files.contains { (try? Data(contentsOf: URL(fileURLWithPath: $0)))?.range(of: Data("qqvanishedqq".utf8)) != nil })
        #expect(files.contains { (try? Data(contentsOf: URL(fileURLWithPath: $0)))?.range(of: Data("qqkeptqq".utf8)) != nil }, "the check can fail")

        let stepwise = try SearchProjection(path: directory.path + "/stepwise.sqlite")
        var read = Offset.zero
        while read < end {
            let batches = try journal.read(from: read, maxBytes: 1)
            try stepwise.apply(batches, history: history)
            read = try #require(batches.last?.nextOffset)
        }
        let words = ["common", "original", "first", "second", "fresh", "changed"]
            + (1...300).map { "w\($0)" } + (first.value..<end.value).map { "n\($0)" } + ["qqvanishedqq", "still", "qqkeptqq"]
        var found = 0
        for word in words {
            let answer = try whole.search(word, in: ["general"], limit: 50).map(\.offset)
            #expect(answer == (try expected(word, in: history, rooms: ["general"], limit: 50)), "\(word)")
            #expect(try stepwise.search(word, in: ["general"], limit: 50).map(\.offset) == answer, "\(word)")
            found += answer.count
        }
        #expect(found > 500, "the words are found")
        for index in [whole, stepwise] { try integrityChecked(index) }
        await journal.close()
    }

    @Test func aQueryIsWordsAndPrefixesNeverFTS5Syntax() throws {
        #expect(try SearchProjection.expression("Hello, world!") == #""Hello" "world""#)
        #expect(try SearchProjection.expression("rel* NEAR(a b) \"x") == #""rel"* "NEAR" "a" "b" "x""#)
        #expect(try SearchProjection.expression("café naïve 42") == #""café" "naïve" "42""#)
        for query in ["", "   ", "*", "\"", "()", "👍"] {
            #expect(throws: ProjectionError.self, "\(query)") { try SearchProjection.expression(query) }
        }
        #expect(throws: ProjectionError.self) { try SearchProjection.expression(String(repeating: "x", count: 257)) }
        #expect(throws: ProjectionError.self) { try SearchProjection.expression("a b c d e f g h i") }
        #expect(try SearchProjection.expression("a b c d e f g h").split(separator: " ").count == 8)
    }

    @Test func aSearchDatabaseOfAnotherLayoutIsEmptiedAndHistoryLosesItsOldIndex() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        _ = try await journal.append(contentsOf: [
            ChatEvent(timestampMs: 1, actor: alice, room: general, body: .roomCreated(name: "G", isPrivate: false)),
            send(general, "hello there"),
        ].map(ChatEventCodec.encode))
        let path = directory.path + "/search.sqlite"
        let search = try SearchProjection(path: path)
        let scratch = try HistoryProjection(path: directory.path + "/scratch.sqlite")
        try scratch.apply(try journal.read(from: .zero))
        try search.apply(try journal.read(from: .zero), history: scratch)
        try await search.database.write { db in try db.execute(sql: "PRAGMA user_version = 99") }
        let reopened = try SearchProjection(path: path)
        #expect(try reopened.nextOffset() == .zero)
        #expect(try reopened.search("hello", in: ["general"]).isEmpty)
        #expect(throws: ProjectionError.self) { try SearchProjection(readingOnly: directory.path + "/none.sqlite") }

        // History's layout 4 held the index in its own file: migrated, the index's tables and
        // their text are gone and the messages stay.
        let historyPath = directory.path + "/history.sqlite"
        let history = try HistoryProjection(path: historyPath)
        try history.apply(try journal.read(from: .zero))
        try await history.database.write { db in
            try db.execute(sql: """
                CREATE VIRTUAL TABLE search_0 USING fts5(text, room_id UNINDEXED);
                INSERT INTO search_0 (rowid, text, room_id) VALUES (1, 'zzyzxquokka', 1);
                CREATE TABLE search_shards (shard INTEGER PRIMARY KEY); INSERT INTO search_shards VALUES (0);
                CREATE TABLE search_erase (shard INTEGER PRIMARY KEY);
                PRAGMA user_version = 4;
                """)
        }
        let migrated = try HistoryProjection(path: historyPath)
        try migrated.eraseDeletedText()
        #expect(try migrated.nextOffset() == Offset(2))
        #expect(try migrated.page(room: "general").map(\.text) == ["hello there"])
        let tables = try await migrated.database.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE name LIKE 'search%'")
        }
        #expect(tables.isEmpty)
        let data = try Data(contentsOf: URL(fileURLWithPath: historyPath))
        #expect(data.range(of: Data("zzyzxquokka".utf8)) == nil)
        await journal.close()
    }
}
