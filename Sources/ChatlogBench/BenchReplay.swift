import ArgumentParser
import ChatModel
import Foundation
import Journal
import Logging
import NIOCore
import Projections

struct BenchReplay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Projection rebuild speed, start-up time with a snapshot, History's memory, and search.",
        discussion: """
            Generates a journal of --events chat events that the room rules accept (rooms, \
            joins, invitations, then mostly messages with some edits, deletions and departures), \
            then measures, in the same run: a plain sequential read of the journal (the \
            baseline); rebuilding the room state from offset 0; writing its snapshot; start-up \
            with that snapshot (open and check the journal, load the snapshot, replay the empty \
            tail); rebuilding History in SQLite in a child process (`chatlog projections \
            rebuild --only history`), whose peak resident memory is read from the kernel, once \
            for the first fifth of the journal and once for all of it; rebuilding the search \
            index alone (`--only search`), then History and the search index together (side by \
            side, as a full rebuild does); then 500 one-word searches of the rebuilt index (as \
            a member of every room, and of 10 rooms) against 500 reads of a room's newest page.

            The last line is one JSON object: room_state_events_per_s, history_messages_per_s, \
            search_messages_per_s, history_and_search_messages_per_s, startup_with_snapshot_s, \
            history_rebuild_peak_rss_mb, search_p99_ms, events, ... Build with -c release for \
            real figures.
            """
    )

    @Option(help: "Events in the generated journal.") var events = 5_000_000
    @Option(help: "Rooms in the generated workload.") var rooms = 2_000
    @Option(help: "Users in the generated workload.") var users = 20_000
    @Option(help: "Directory for the journal (default: a new temporary directory, removed afterwards).")
    var directory: String?

    func validate() throws {
        guard events >= 10_000 else { throw ValidationError("--events must be at least 10000") }
        guard rooms > 0, users > 1 else { throw ValidationError("--rooms and --users must be positive") }
    }

    func run() async throws {
        let root = directory ?? NSTemporaryDirectory() + "chatlog-bench-replay-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: root) } }
        let journalPath = root + "/journal"
        try? FileManager.default.removeItem(atPath: journalPath)
        var logger = Logger(label: "chatlog.bench")
        logger.logLevel = .warning
        var configuration = JournalConfiguration()
        configuration.durability = .none

        // Generate.
        let generateStart = ContinuousClock.now
        var journal = try Journal.open(directory: journalPath, configuration: configuration, logger: logger)
        var generator = ReplayWorkload(rooms: rooms, users: users)
        let messages = try await generator.append(events, to: journal)
        print(String(format: "generated %d events (%d messages) in %.1f s", events, messages, seconds(since: generateStart)))

        // Baseline: read every record.
        var reader = journal.makeReader()
        let readStart = ContinuousClock.now
        var next = Offset.zero
        var recordBytes = 0
        while next < journal.committedOffset {
            for batch in try reader.read(from: next, maxBytes: 4 << 20) {
                batch.forEachRecord { _, bytes in recordBytes += bytes.count }
                next = batch.nextOffset
            }
        }
        let readRate = Double(events) / seconds(since: readStart)
        print(String(format: "journal read:        %.0f events/s", readRate))

        // Room state from offset 0.
        let paths = ProjectionPaths(journalDirectory: journalPath)
        try FileManager.default.createDirectory(atPath: paths.directory, withIntermediateDirectories: true)
        var projection = RoomStateProjection(limits: ChatLimits(), snapshotPath: paths.roomStateSnapshot)
        let roomStateStart = ContinuousClock.now
        try projection.catchUp(journal: journal, until: journal.committedOffset)
        let roomStateSeconds = seconds(since: roomStateStart)
        let roomStateRate = Double(events) / roomStateSeconds
        print(String(format: "room state rebuild:  %.0f events/s (%.2f s, %d rooms)", roomStateRate, roomStateSeconds, projection.state.roomCount))
        let snapshotStart = ContinuousClock.now
        try projection.saveSnapshot()
        let snapshotSeconds = seconds(since: snapshotStart)
        let snapshotBytes = (try? FileManager.default.attributesOfItem(atPath: paths.roomStateSnapshot)[.size] as? Int) ?? 0
        print(String(format: "snapshot write:      %.3f s (%d bytes)", snapshotSeconds, snapshotBytes))
        await journal.close()

        // Start-up with the fresh snapshot.
        let startupStart = ContinuousClock.now
        journal = try Journal.open(directory: journalPath, configuration: configuration, logger: logger)
        let runner = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: logger)
        try runner.catchUp()
        let startupSeconds = seconds(since: startupStart)
        guard runner.roomState?.state == projection.state else {
            throw ValidationError("the state loaded from the snapshot differs from the rebuilt one")
        }
        await journal.close()
        print(String(format: "start-up w/ snapshot: %.3f s", startupSeconds))

        // History, in a child process so that its peak memory is its own.
        let fifth = try childRebuild(journalPath, [.history], until: UInt64(events / 5))
        let full = try childRebuild(journalPath, [.history], until: nil)
        let historyRate = Double(messages) / full.seconds
        print(String(format: "history rebuild:     %.0f messages/s (%.2f s); peak RSS %.1f MB (%.1f MB for the first fifth)",
                     historyRate, full.seconds, full.peakRSSMB, fifth.peakRSSMB))
        let searchAlone = try childRebuild(journalPath, [.search], until: nil)
        let searchRate = Double(messages) / searchAlone.seconds
        print(String(format: "search rebuild:      %.0f messages/s (%.2f s); peak RSS %.1f MB", searchRate, searchAlone.seconds,
                     searchAlone.peakRSSMB))
        let both = try childRebuild(journalPath, [.history, .search], until: nil)
        let bothRate = Double(messages) / both.seconds
        print(String(format: "history and search:  %.0f messages/s (%.2f s, side by side); peak RSS %.1f MB", bothRate, both.seconds,
                     both.peakRSSMB))

        // Search over the rebuilt index, against reading a page of History in the same run.
        let history = try HistoryProjection(readingOnly: ProjectionPaths(journalDirectory: journalPath).history)
        let index = try SearchProjection(readingOnly: ProjectionPaths(journalDirectory: journalPath).search)
        let search = try Self.searchLatencies(history, index, rooms: generator.roomIDs.map(\.value))
        print(String(format: "history page (baseline): p50 %.2f ms, p99 %.2f ms", search.page.p50, search.page.p99))
        print(String(format: "search, one word, all %d rooms: p50 %.2f ms, p99 %.2f ms (%.1fx the page's p99)",
                     generator.roomIDs.count, search.all.p50, search.all.p99, search.all.p99 / search.page.p99))
        print(String(format: "search, one word, 10 rooms:     p50 %.2f ms, p99 %.2f ms", search.ten.p50, search.ten.p99))

        struct Result: Encodable {
            var events: Int
            var messages: Int
            var journal_read_events_per_s: Double
            var room_state_events_per_s: Double
            var room_state_vs_read: Double
            var snapshot_write_s: Double
            var startup_with_snapshot_s: Double
            var history_messages_per_s: Double
            var search_messages_per_s: Double
            var history_and_search_messages_per_s: Double
            var history_rebuild_peak_rss_mb: Double
            var history_rebuild_peak_rss_mb_fifth: Double
            var page_p99_ms: Double
            var search_p50_ms: Double
            var search_p99_ms: Double
            var search_10_rooms_p99_ms: Double
        }
        func round(_ value: Double, _ places: Double = 3) -> Double {
            let scale = pow(10, places)
            return (value * scale).rounded() / scale
        }
        print(resultLine(Result(
            events: events, messages: messages, journal_read_events_per_s: readRate.rounded(),
            room_state_events_per_s: roomStateRate.rounded(), room_state_vs_read: round(roomStateRate / readRate, 2),
            snapshot_write_s: round(snapshotSeconds), startup_with_snapshot_s: round(startupSeconds),
            history_messages_per_s: historyRate.rounded(), search_messages_per_s: searchRate.rounded(),
            history_and_search_messages_per_s: bothRate.rounded(), history_rebuild_peak_rss_mb: round(full.peakRSSMB, 1),
            history_rebuild_peak_rss_mb_fifth: round(fifth.peakRSSMB, 1), page_p99_ms: round(search.page.p99),
            search_p50_ms: round(search.all.p50), search_p99_ms: round(search.all.p99), search_10_rooms_p99_ms: round(search.ten.p99))))
    }

    struct Latency {
        var p50: Double
        var p99: Double

        init(_ milliseconds: [Double]) {
            let sorted = milliseconds.sorted()
            p50 = sorted[sorted.count / 2]
            p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
        }
    }

    /// 500 one-word searches (words of the generated messages, common and rare) as a member of
    /// every room and of 10 rooms, newest 20; and 500 reads of a room's newest 20 messages.
    static func searchLatencies(_ history: HistoryProjection, _ search: SearchProjection,
                                rooms: [String]) throws -> (page: Latency, all: Latency, ten: Latency) {
        var random = SplitMix(seed: 23)
        let words = ["deploy", "release", "coffee", "figma", "flaky", "rebase", "dashboard", "tomorrow", "latency", "ship",
                     "standup", "roadmap", "staging", "ticket", "weird"]
        func timed(_ body: () throws -> Void) rethrows -> Double {
            let start = ContinuousClock.now
            try body()
            let elapsed = ContinuousClock.now - start
            return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        }
        let everyRoom = Set(rooms)
        var page: [Double] = [], all: [Double] = [], ten: [Double] = []
        for _ in 0..<500 {
            let room = rooms[Int(random.next() % UInt64(rooms.count))]
            page.append(try timed { _ = try history.page(room: room, limit: 20) })
            let word = words[Int(random.next() % UInt64(words.count))]
            all.append(try timed { _ = try history.messages(at: try search.search(word, in: everyRoom, limit: 20)) })
            let some = Set((0..<10).map { _ in rooms[Int(random.next() % UInt64(rooms.count))] })
            ten.append(try timed { _ = try history.messages(at: try search.search(word, in: some, limit: 20)) })
        }
        return (Latency(page), Latency(all), Latency(ten))
    }

    /// Runs `chatlog projections rebuild --only KIND...` and returns its wall time and the peak
    /// memory it reports (its own VmHWM: rusage would include this process's memory).
    func childRebuild(_ journal: String, _ kinds: [ProjectionKind], until: UInt64?) throws -> (seconds: Double, peakRSSMB: Double) {
        guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            throw ValidationError("cannot find this executable through /proc/self/exe")
        }
        var arguments = ["projections", "rebuild", "--journal", journal, "--log-level", "error"]
        for kind in kinds { arguments += ["--only", kind.rawValue] }
        if let until { arguments += ["--until", String(until)] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        let start = ContinuousClock.now
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let elapsed = seconds(since: start)
        let summary = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0,
              let range = summary.range(of: "peak memory "),
              let peak = Double(summary[range.upperBound...].prefix { $0.isNumber || $0 == "." })
        else { throw ValidationError("the \(kinds.map(\.rawValue).joined(separator: " and ")) rebuild child failed: \(summary)") }
        return (elapsed, peak)
    }
}

/// Generates a chat workload that the room rules accept, for `bench replay`. Keeps its own
/// member lists so that picking a sender is O(1).
struct ReplayWorkload {
    var state = RoomState()
    let roomIDs: [RoomID]
    let userIDs: [UserID]
    var members: [[UserID]]
    var random = SplitMix(seed: 7)
    let sentences: [String]
    var now: Int64 = 1_795_000_000_000
    var recent: [(RoomID, MessageID, UserID)] = []

    init(rooms: Int, users: Int) {
        roomIDs = (0..<rooms).compactMap { RoomID("room-\($0)") }
        userIDs = (0..<users).compactMap { UserID("user-\($0)") }
        members = Array(repeating: [], count: rooms)
        var text = SyntheticChat(seed: 9)
        sentences = (0..<8192).map { _ in text.sentence(targetBytes: 100) }
    }

    /// Appends `count` events; returns how many are messages.
    mutating func append(_ count: Int, to journal: Journal) async throws -> Int {
        var buffers: [ByteBuffer] = []
        var produced = 0
        var messages = 0
        var created = 0
        while produced < count {
            now += 3
            let roomIndex = created < roomIDs.count ? created : Int(random.next() % UInt64(roomIDs.count))
            let (command, actor) = nextCommand(roomIndex: roomIndex, create: created < roomIDs.count)
            created += 1
            guard case .accepted(let events) = state.decide(command, by: actor, at: now) else { continue }
            for event in events {
                let offset = journal.nextOffset.value + UInt64(buffers.count)
                state.apply(event, at: offset)
                switch event.body {
                case .roomCreated, .memberJoined:
                    members[roomIndex].append(event.actor)
                case .memberLeft:
                    members[roomIndex].removeAll { $0 == event.actor }
                case .messageSent:
                    messages += 1
                    let entry = (event.room, MessageID(offset), event.actor)
                    if recent.count < 4096 { recent.append(entry) } else { recent[Int(random.next() % 4096)] = entry }
                default:
                    break
                }
                buffers.append(ChatEventCodec.encode(event))
            }
            produced += events.count
            if buffers.count >= 4096 || produced >= count {
                _ = try await journal.append(contentsOf: buffers)
                buffers.removeAll(keepingCapacity: true)
            }
        }
        return messages
    }

    mutating func pick<T>(_ items: [T]) -> T { items[Int(random.next() % UInt64(items.count))] }

    /// Rooms first, then a mix: mostly messages, some joins and invitations, a few edits,
    /// deletions and departures.
    mutating func nextCommand(roomIndex: Int, create: Bool) -> (ChatCommand, UserID) {
        let room = roomIDs[roomIndex]
        if create {
            return (.createRoom(room, name: "Room \(roomIndex)", isPrivate: roomIndex % 5 == 0), pick(userIDs))
        }
        let owner = state.room(room)?.owner ?? pick(userIDs)
        let sender = members[roomIndex].isEmpty ? owner : pick(members[roomIndex])
        switch random.next() % 1000 {
        case 0..<15:
            let user = pick(userIDs)
            if state.room(room)?.isPrivate == true, state.room(room)?.members.contains(user) == false,
               state.room(room)?.invited.contains(user) == false {
                return (.invite(room, user: user), owner)
            }
            return (.join(room), user)
        case 15..<18:
            return (.leave(room), sender)
        case 18..<25 where !recent.isEmpty:
            let (messageRoom, message, author) = pick(recent)
            return (.edit(messageRoom, message: message, text: "edited: " + pick(sentences)), author)
        case 25..<28 where !recent.isEmpty:
            let (messageRoom, message, author) = pick(recent)
            return (.delete(messageRoom, message: message), author)
        default:
            return (.send(room, clientMessageID: String(random.next() & 0xFF_FFFF_FFFF, radix: 36), text: pick(sentences),
                          clientCreatedMs: now - 40), sender)
        }
    }
}

/// SplitMix64, a small deterministic generator.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
