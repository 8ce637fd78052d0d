import ArgumentParser
import ChatModel
import Foundation
import Journal
import Logging
import Projections

struct ProjectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projections",
        abstract: "Rebuild the projections (room state, history, search) from the journal.",
        subcommands: [Rebuild.self]
    )

    struct Rebuild: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete and rebuild projections from offset 0.",
            discussion: """
                Projections live in <journal>/projections/ and are derived: this deletes them \
                and replays the whole journal, with a progress bar when standard error is a \
                terminal, then prints a summary line. History and the search index are built \
                side by side, on two threads. Takes the journal's lock.

                With --into DIR it builds them into DIR instead (room-state.snapshot, \
                history.sqlite and search.sqlite; the search index is always built with \
                History), reading the journal without its lock: it works beside a running \
                server, and leaves the server's projections alone.
                """
        )

        @OptionGroup var options: JournalOptions
        @OptionGroup var logging: LoggingOptions
        @Option(help: "Rebuild only this projection: room-state, history or search (repeat for several).") var only: [ProjectionKind] = []
        @Option(help: ArgumentHelp("Stop after this offset (for measuring).", visibility: .hidden)) var until: UInt64?
        @Option(help: ArgumentHelp("Build into this directory, without the journal's lock (beside a running server).", valueName: "dir"))
        var into: String?

        func run() async throws {
            let logger = logging.makeLogger(label: "chatlog.projections")
            if let into {
                try rebuild(into: into, logger: logger)
                return
            }
            let kinds = self.kinds
            let paths = ProjectionPaths(journalDirectory: options.journal)
            let start = ContinuousClock.now
            let (events, messages) = try await withJournal(options.journal, logger: logger) { journal in
                if kinds.contains(.roomState) { try? FileManager.default.removeItem(atPath: paths.roomStateSnapshot) }
                for (kind, path) in [(ProjectionKind.history, paths.history), (.search, paths.search)] where kinds.contains(kind) {
                    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
                }
                let runner = try ProjectionRunner(journal: journal, paths: paths, kinds: kinds, logger: logger)
                let target = min(journal.committedOffset.value, until ?? .max)
                let first = journal.earliestOffset.value
                var bar = ProgressBar(total: UInt64(kinds.count) * (target - min(target, first)))
                try runner.catchUp(until: Offset(target)) { done, _ in bar.update(done) }
                bar.finish()
                let messages = try runner.history.map { try $0.messageCount() }
                return (target - first, messages)
            }
            let elapsed = start.duration(to: .now).inSeconds
            var summary = String(format: "rebuilt %@ from %llu events in %.2f s (%.0f events/s)",
                                 Self.listed(kinds), events, elapsed, Double(events) / max(elapsed, 1e-9))
            if let messages { summary += ", \(messages) messages in history" }
            if let peak = peakResidentMemoryMB() { summary += String(format: ", peak memory %.1f MB", peak) }
            print(summary)
        }
    }
}

extension ProjectionsCommand.Rebuild {
    var kinds: Set<ProjectionKind> { only.isEmpty ? Set(ProjectionKind.allCases) : Set(only) }

    /// "history", "history and search", "history, room-state and search".
    static func listed(_ kinds: Set<ProjectionKind>) -> String {
        let names = kinds.map(\.rawValue).sorted()
        guard let last = names.last else { return "nothing" }
        return names.count == 1 ? last : names.dropLast().joined(separator: ", ") + " and " + last
    }

    /// Builds the projections into `directory` from a lock-free read of the journal.
    func rebuild(into directory: String, logger: Logger) throws {
        let kinds = self.kinds
        let start = ContinuousClock.now
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let snapshotPath = directory + "/room-state.snapshot"
        let historyPath = directory + "/history.sqlite"
        let searchPath = directory + "/search.sqlite"
        try? FileManager.default.removeItem(atPath: snapshotPath)
        for path in [historyPath, searchPath] {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        var roomState = kinds.contains(.roomState) ? RoomStateProjection(limits: ChatLimits(), snapshotPath: snapshotPath) : nil
        // The search index is built with History: an edit takes out of it the text History replaced.
        let history = kinds.contains(.history) || kinds.contains(.search) ? try HistoryProjection(path: historyPath) : nil
        let search = kinds.contains(.search) ? try SearchProjection(path: searchPath) : nil
        let limit = until.map { Offset($0) }
        var events: UInt64 = 0
        var pending: [RecordBatch] = []
        var pendingBytes = 0
        func flush() throws {
            try history?.apply(pending, deferTails: true)
            if let search, let history { try search.apply(pending, history: history) }
            pending.removeAll(keepingCapacity: true)
            pendingBytes = 0
        }
        try forEachBatch(in: options.journal, from: .zero) { batch in
            if let limit, batch.baseOffset >= limit { return }
            try roomState?.apply(batch)
            events += UInt64(batch.header.recordCount)
            pending.append(batch)
            pendingBytes += batch.framedRecords.readableBytes
            if pendingBytes >= 16 << 20 { try flush() }
        }
        try flush()
        try history?.writeDeferredTails()
        if let search, let history { try history.pruneReplaced(below: try search.nextOffset()) }
        try search?.eraseDeletedText()
        try roomState?.saveSnapshot()
        let messages = try history.map { try $0.messageCount() }
        let elapsed = start.duration(to: .now).inSeconds
        var summary = String(format: "rebuilt %@ into %@ from %llu events in %.2f s", Self.listed(kinds),
                             directory, events, elapsed)
        if let messages { summary += ", \(messages) messages in history" }
        print(summary)
    }
}

extension ProjectionKind: ExpressibleByArgument {}

struct RoomsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rooms",
        abstract: "List rooms with their owner, privacy, members and pending invitations.",
        discussion: """
            Brings the room-state projection up to date first (from its snapshot). Beside a \
            running server it takes no lock and writes nothing: it reads the server's snapshot \
            and the journal after it.
            """
    )

    @OptionGroup var options: JournalOptions
    @OptionGroup var logging: LoggingOptions
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    struct RoomJSON: Encodable {
        var room: String
        var name: String
        var owner: String
        var `private`: Bool
        var members: [String]
        var invited: [String]
    }

    func run() async throws {
        let state = try await roomState(options.journal, logger: logging.makeLogger(label: "chatlog.rooms"))
        let rooms = state.rooms.sorted { $0.key < $1.key }.map { id, room in
            RoomJSON(room: id.value, name: room.name, owner: room.owner.value, private: room.isPrivate,
                     members: room.members.map(\.value).sorted(), invited: room.invited.map(\.value).sorted())
        }
        switch format {
        case .json:
            for room in rooms { print(jsonLine(room)) }
        case .text:
            for room in rooms {
                print("\(room.room)  \"\(room.name)\"  owner \(room.owner)  \(room.private ? "private" : "public")  \(room.members.count) members: \(room.members.joined(separator: ", "))\(room.invited.isEmpty ? "" : "  invited: " + room.invited.joined(separator: ", "))")
            }
            print("\(rooms.count) rooms")
        }
    }
}

/// The journal's room state now: beside a running server its snapshot and the journal after
/// it, writing nothing; else the projection, brought up to date.
func roomState(_ directory: String, logger: Logger) async throws -> RoomState {
    if case .some = journalHolder(directory) {
        let paths = ProjectionPaths(journalDirectory: directory)
        var projection = RoomStateProjection.load(limits: ChatLimits(), snapshotPath: paths.roomStateSnapshot, logger: logger)
        try forEachBatch(in: directory, from: projection.nextOffset) { try projection.apply($0) }
        return projection.state
    }
    return try await withProjections(directory, kinds: [.roomState], logger: logger) { _, runner in
        guard let state = runner.roomState?.state else { preconditionFailure("the runner was asked for room state") }
        return state
    }
}

/// `read` on the journal's History: beside a running server, which keeps it up to date, read
/// as it is (no lock, nothing written) once it holds what the journal held when called
/// (`awaitHistory`); else brought up to date first.
func readingHistory<R: Sendable>(_ directory: String, logger: Logger,
                                 _ read: @escaping @Sendable (HistoryProjection) throws -> R) async throws -> R {
    try await readingHistory(directory, search: false, logger: logger) { history, _ in try read(history) }
}

/// `read` on the journal's History and, with `search`, its search index (nil without), as
/// `readingHistory` reads History.
func readingHistory<R: Sendable>(_ directory: String, search: Bool, logger: Logger,
                                 _ read: @escaping @Sendable (HistoryProjection, SearchProjection?) throws -> R) async throws -> R {
    let paths = ProjectionPaths(journalDirectory: directory)
    if case .some = journalHolder(directory) {
        let history = try HistoryProjection(readingOnly: paths.history)
        try await awaitHistory(history, journal: directory, logger: logger)
        return try read(history, search ? try SearchProjection(readingOnly: paths.search) : nil)
    }
    return try await withProjections(directory, kinds: search ? [.history, .search] : [.history], logger: logger) { _, runner in
        guard let history = runner.history else { preconditionFailure("the runner was asked for history") }
        return try read(history, runner.search)
    }
}

/// How long a command beside a running server waits for its History to reach the journal's
/// end: History applies what commits every `historyWriteInterval` (50 ms by default, 1 s at
/// most), so a message acknowledged before the command ran is in what it reads.
let besideServerHistoryWait = Duration.seconds(2)

/// Waits until `history`, kept by a running server, holds every batch the journal had when
/// called, or `besideServerHistoryWait` passed (its server stopped, or commits wait for a
/// standby): then it is read as it is, with a warning.
func awaitHistory(_ history: HistoryProjection, journal directory: String, logger: Logger) async throws {
    // The end of the last segment: headers and checksums only, the records left compressed.
    var end = try history.nextOffset()
    if let last = try JournalDirectory.segments(in: directory).last {
        try JournalDirectory.walk(last, decode: false) { step in
            if case .batch(let batch) = step { end = max(end, batch.nextOffset) }
        }
    }
    let deadline = ContinuousClock.now + besideServerHistoryWait
    while case let next = try history.nextOffset(), next < end {
        guard ContinuousClock.now < deadline else {
            logger.warning("history beside the server lags the journal; reading it as it is",
                           metadata: ["history.next": "\(next)", "journal.end": "\(end)"])
            return
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show a page of a room's messages.",
        discussion: """
            Brings the history projection up to date first, then prints the newest --limit \
            messages, or those just before --before or just after --after (offsets, as \
            printed). Deleted messages show without their text. Beside a running server it takes \
            no lock and reads the history the server keeps up to date, once that holds what the \
            journal held when the command started (the server applies it every 50 ms; waits 2 s \
            at most).
            """
    )

    @OptionGroup var options: JournalOptions
    @OptionGroup var logging: LoggingOptions
    @Option(help: "The room.") var room: String
    @Option(help: "Messages before this offset.") var before: UInt64?
    @Option(help: "Messages after this offset (with --before: the oldest between the two).") var after: UInt64?
    @Option(help: "Messages per page, 1 to 200.") var limit = 50
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func validate() throws {
        guard (1...HistoryProjection.pageLimitMax).contains(limit) else {
            throw ValidationError("--limit must be in 1...\(HistoryProjection.pageLimitMax)")
        }
    }

    func run() async throws {
        let logger = logging.makeLogger(label: "chatlog.history")
        let page = try await readingHistory(options.journal, logger: logger) { history in
            try history.page(room: room, before: before, after: after, limit: limit)
        }
        // Nothing to show: a room nobody created is a mistake to report, an empty page of a
        // room that exists is an answer.
        if page.isEmpty, RoomID(room).flatMap(try await roomState(options.journal, logger: logger).room) == nil {
            throw CommandFailure.refused("no room \(room) in the journal (chatlog rooms --journal \(options.journal) lists them)")
        }
        switch format {
        case .json:
            for message in page { print(jsonLine(message)) }
        case .text:
            if page.isEmpty { printError("no messages in \(room)\(before != nil || after != nil ? " in that range" : "")") }
            for message in page {
                let text = message.text.map { $0.debugDescription } ?? "(deleted)"
                print("\(message.offset)  \(isoTimestamp(message.sentMs))  \(message.author): \(text)\(message.editedMs != nil ? " (edited)" : "")")
            }
        }
    }
}

struct SearchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Find messages by their words, newest first.",
        discussion: """
            Searches every room (an operator's view: no membership applies), or --room. A \
            message matches when it has every word of QUERY; a word followed by * matches as a \
            prefix; case and diacritics are ignored, and other punctuation is not syntax. Brings \
            the history and search projections up to date first; beside a running server it \
            takes no lock and reads what the server keeps up to date (its search index may lag \
            the chat by up to a fifth of a second).
            """
    )

    @OptionGroup var options: JournalOptions
    @OptionGroup var logging: LoggingOptions
    @Argument(help: "The words to find (at most 8, 256 bytes).") var query: String
    @Option(help: "Only this room.") var room: String?
    @Option(help: "Messages before this offset.") var before: UInt64?
    @Option(help: "How many messages, 1 to \(SearchProjection.limitMax).") var limit = 20
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    func validate() throws {
        guard (1...SearchProjection.limitMax).contains(limit) else {
            throw ValidationError("--limit must be in 1...\(SearchProjection.limitMax)")
        }
        do {
            _ = try SearchProjection.expression(query)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        let logger = logging.makeLogger(label: "chatlog.search")
        let state = try await roomState(options.journal, logger: logger)
        var rooms = Set(state.rooms.keys.map(\.value))
        if let room {
            guard rooms.contains(room) else {
                throw CommandFailure.refused("no room \(room) in the journal (chatlog rooms --journal \(options.journal) lists them)")
            }
            rooms = [room]
        }
        let searched = rooms
        let found = try await readingHistory(options.journal, search: true, logger: logger) { history, search in
            guard let search else { preconditionFailure("the search index was asked for") }
            return try history.messages(at: try search.search(query, in: searched, before: before, limit: limit))
        }
        switch format {
        case .json:
            for message in found { print(jsonLine(message)) }
        case .text:
            if found.isEmpty { printError("no messages found") }
            for message in found {
                print("\(message.offset)  \(isoTimestamp(message.sentMs))  \(message.room)  \(message.author): \((message.text ?? "").debugDescription)")
            }
        }
    }
}

/// This process's peak resident memory (VmHWM), in MB. Read from /proc because
/// `getrusage`'s maxrss also counts the parent's memory before `exec`.
func peakResidentMemoryMB() -> Double? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
    else { return nil }
    return kilobytes / 1024
}
