import ArgumentParser
import ChatModel
import Foundation
import Journal
import Logging
import NIOCore
import Projections

/// Opens a journal for a command that needs its lock, with the error a user can act on.
func openJournal(_ directory: String, logger: Logger, create: Bool = false) throws -> Journal {
    guard create || FileManager.default.fileExists(atPath: directory + "/journal.meta") else {
        throw ValidationError("no journal at \(directory)")
    }
    let result = Result { () throws(JournalError) -> Journal in try Journal.open(directory: directory, logger: logger) }
    if case .failure(.locked(_, let pid)) = result {
        throw ValidationError("the journal \(directory) is in use by process \(pid.map(String.init) ?? "?") (a running server?); stop it first")
    }
    return try result.get()
}

/// Runs `body` with the journal open, closing it afterwards whatever happens.
func withJournal<T>(_ directory: String, logger: Logger, create: Bool = false, _ body: (Journal) async throws -> T) async throws -> T {
    let journal = try openJournal(directory, logger: logger, create: create)
    do {
        let result = try await body(journal)
        await journal.close()
        return result
    } catch {
        await journal.close()
        throw error
    }
}

/// Whether a process (a running server) holds the journal's lock, and its pid.
func journalHolder(_ directory: String) -> Int32?? {
    JournalDirectory.lockHolder(directory: directory)
}

/// Every committed batch from `offset` on, read without the lock (beside a running server).
///
/// The last segment may end in a batch the server is writing at this moment: the walk stops
/// there quietly. Damage anywhere else is an error.
func forEachBatch(in directory: String, from offset: Offset, _ visit: (RecordBatch) throws -> Void) throws {
    let segments = try JournalDirectory.segments(in: directory)
    for (index, segment) in segments.enumerated() {
        if index + 1 < segments.count, segments[index + 1].baseOffset <= offset { continue }
        let isLast = index + 1 == segments.count
        try JournalDirectory.walk(segment) { step in
            switch step {
            case .problem(let problem):
                guard isLast else { throw ValidationError("the journal is damaged: \(problem)") }
            case .batch(let batch):
                if batch.nextOffset > offset { try visit(batch) }
            }
        }
    }
}

/// Runs `body` with the journal open and the given projections caught up with it.
func withProjections<T>(
    _ directory: String,
    kinds: Set<ProjectionKind>,
    logger: Logger,
    create: Bool = false,
    _ body: (Journal, ProjectionRunner) async throws -> T
) async throws -> T {
    try await withJournal(directory, logger: logger, create: create) { journal in
        let runner = try ProjectionRunner(journal: journal, paths: ProjectionPaths(journalDirectory: directory),
                                          kinds: kinds, logger: logger)
        try runner.catchUp()
        return try await body(journal, runner)
    }
}

extension JournalCommand {
    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write chat events as JSON lines, one per event, to standard output.",
            discussion: """
                Each line is one event with its offset (see the README, "Exporting and \
                importing"). Read-only and takes no lock. Records that are not chat events of a \
                known type are skipped with a note on standard error.
                """
        )

        @OptionGroup var options: JournalOptions
        @Option(help: "First offset to export.") var from: UInt64 = 0
        @Option(help: "Export only this room's events.") var room: String?

        func run() async throws {
            let out = FileHandle.standardOutput
            var lines = Data()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var skipped = 0
            try forEachBatch(in: options.journal, from: Offset(from)) { batch in
                for record in batch.records where record.offset.value >= from {
                    guard case .event(let event) = try ChatEventCodec.decode(record.payload) else {
                        skipped += 1
                        continue
                    }
                    if let room, event.room.value != room { continue }
                    lines.append(try encoder.encode(EventJSON(offset: record.offset.value, event: event)))
                    lines.append(0x0A)
                }
                if lines.count > 1 << 20 {
                    out.write(lines)
                    lines.removeAll(keepingCapacity: true)
                }
            }
            out.write(lines)
            if skipped > 0 { printError("note: skipped \(skipped) records of unknown event types") }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Append chat events from JSON lines on standard input, checking each against the room rules.",
            discussion: """
                Each line is one event in the export format. Every line is checked against the \
                room rules in order, as if its actor had sent the matching command at its \
                timestamp. At the first invalid line the import stops: the lines before it are \
                appended, nothing after it is, and the line number and reason are printed \
                (exit 1). With --skip-invalid, invalid lines are reported and skipped instead.

                Lines may carry an "offset" (as export writes): message_edited and \
                message_deleted lines then refer to messages by that offset, and are mapped to \
                the offsets the messages get here. This is also the migration path from a SQL \
                messages table: write one room_created line per room, then one message_sent \
                line per row.
                """
        )

        @OptionGroup var options: JournalOptions
        @OptionGroup var logging: LoggingOptions
        @Flag(help: "Report and skip invalid lines instead of stopping at the first.") var skipInvalid = false
        @Option(help: "Events appended per durable append.") var appendBatch = 1000

        func validate() throws {
            guard (1...100_000).contains(appendBatch) else { throw ValidationError("--append-batch must be in 1...100000") }
        }

        func run() async throws {
            let logger = logging.makeLogger(label: "chatlog.import")
            let outcome: (imported: Int, invalid: Int, firstBad: String?) = try await withProjections(
                options.journal, kinds: [.roomState], logger: logger, create: true
            ) { journal, runner in
                guard var projection = runner.roomState else { preconditionFailure("the runner was asked for room state") }
                let decoder = JSONDecoder()
                var pending: [ByteBuffer] = []
                var offsetMap: [UInt64: UInt64] = [:]
                var imported = 0
                var invalid = 0
                var lineNumber = 0
                func flush() async throws {
                    guard !pending.isEmpty else { return }
                    _ = try await journal.append(contentsOf: pending)
                    imported += pending.count
                    pending.removeAll(keepingCapacity: true)
                }
                while let line = readLine(strippingNewline: true) {
                    lineNumber += 1
                    if line.allSatisfy(\.isWhitespace) { continue }
                    do {
                        let json: EventJSON
                        do {
                            json = try decoder.decode(EventJSON.self, from: Data(line.utf8))
                        } catch {
                            throw ImportLineError("not an event object: \(error)")
                        }
                        let (command, actor) = try json.command { offsetMap[$0] ?? $0 }
                        switch projection.state.decide(command, by: actor, at: json.timestamp_ms) {
                        case .accepted(let events):
                            for event in events {
                                let offset = projection.nextOffset
                                projection.apply(event, at: offset)
                                if let source = json.offset { offsetMap[source] = offset.value }
                                pending.append(ChatEventCodec.encode(event))
                            }
                        case .duplicate(let original):
                            throw ImportLineError("duplicate client message id of message \(original)")
                        case .rejected(let rejection):
                            throw ImportLineError("\(rejection.code.rawValue): \(rejection.message)")
                        }
                    } catch let error as ImportLineError {
                        invalid += 1
                        let report = "line \(lineNumber): \(error)"
                        guard skipInvalid else {
                            try await flush()
                            return (imported, invalid, report)
                        }
                        printError("skipped \(report)")
                    }
                    if pending.count >= appendBatch { try await flush() }
                }
                try await flush()
                return (imported, invalid, nil)
            }
            print("imported \(outcome.imported) events\(outcome.invalid > 0 ? ", \(outcome.invalid) invalid lines" : "")")
            if let firstBad = outcome.firstBad {
                printError("stopped at \(firstBad); nothing after it was appended (use --skip-invalid to skip such lines)")
                throw ExitCode(1)
            }
        }
    }
}

struct ProjectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projections",
        abstract: "Rebuild the projections (room state, history) from the journal.",
        subcommands: [Rebuild.self]
    )

    struct Rebuild: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete and rebuild projections from offset 0.",
            discussion: """
                Projections live in <journal>/projections/ and are derived: this deletes them \
                and replays the whole journal, with a progress bar when standard error is a \
                terminal, then prints a summary line. Takes the journal's lock.

                With --into DIR it builds them into DIR instead (room-state.snapshot and \
                history.sqlite), reading the journal without its lock: it works beside a \
                running server, and leaves the server's projections alone.
                """
        )

        @OptionGroup var options: JournalOptions
        @OptionGroup var logging: LoggingOptions
        @Option(help: "Rebuild only this projection: room-state or history.") var only: ProjectionKind?
        @Option(help: ArgumentHelp("Stop after this offset (for measuring).", visibility: .hidden)) var until: UInt64?
        @Option(help: ArgumentHelp("Build into this directory, without the journal's lock (beside a running server).", valueName: "dir"))
        var into: String?

        func run() async throws {
            let logger = logging.makeLogger(label: "chatlog.projections")
            if let into {
                try rebuild(into: into, logger: logger)
                return
            }
            let kinds: Set<ProjectionKind> = only.map { [$0] } ?? Set(ProjectionKind.allCases)
            let paths = ProjectionPaths(journalDirectory: options.journal)
            let start = ContinuousClock.now
            let (events, messages) = try await withJournal(options.journal, logger: logger) { journal in
                if kinds.contains(.roomState) { try? FileManager.default.removeItem(atPath: paths.roomStateSnapshot) }
                if kinds.contains(.history) {
                    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: paths.history + suffix) }
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
                                 kinds.map(\.rawValue).sorted().joined(separator: " and "), events, elapsed, Double(events) / max(elapsed, 1e-9))
            if let messages { summary += ", \(messages) messages in history" }
            if let peak = peakResidentMemoryMB() { summary += String(format: ", peak memory %.1f MB", peak) }
            print(summary)
        }
    }
}

extension ProjectionsCommand.Rebuild {
    /// Builds the projections into `directory` from a lock-free read of the journal.
    func rebuild(into directory: String, logger: Logger) throws {
        let kinds: Set<ProjectionKind> = only.map { [$0] } ?? Set(ProjectionKind.allCases)
        let start = ContinuousClock.now
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let snapshotPath = directory + "/room-state.snapshot"
        let historyPath = directory + "/history.sqlite"
        try? FileManager.default.removeItem(atPath: snapshotPath)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: historyPath + suffix) }
        var roomState = kinds.contains(.roomState) ? RoomStateProjection(limits: ChatLimits(), snapshotPath: snapshotPath) : nil
        let history = kinds.contains(.history) ? try HistoryProjection(path: historyPath) : nil
        let limit = until.map { Offset($0) }
        var events: UInt64 = 0
        var pending: [RecordBatch] = []
        var pendingBytes = 0
        func flush() throws {
            try history?.apply(pending, deferTails: true)
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
        try roomState?.saveSnapshot()
        let messages = try history.map { try $0.messageCount() }
        let elapsed = start.duration(to: .now).inSeconds
        var summary = String(format: "rebuilt %@ into %@ from %llu events in %.2f s", kinds.map(\.rawValue).sorted().joined(separator: " and "),
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
        let logger = logging.makeLogger(label: "chatlog.rooms")
        let state: RoomState
        if case .some = journalHolder(options.journal) {
            // A server runs: read its snapshot and the journal after it, writing nothing.
            let paths = ProjectionPaths(journalDirectory: options.journal)
            var projection = RoomStateProjection.load(limits: ChatLimits(), snapshotPath: paths.roomStateSnapshot, logger: logger)
            try forEachBatch(in: options.journal, from: projection.nextOffset) { try projection.apply($0) }
            state = projection.state
        } else {
            state = try await withProjections(options.journal, kinds: [.roomState], logger: logger) { _, runner in
                guard let state = runner.roomState?.state else { preconditionFailure("the runner was asked for room state") }
                return state
            }
        }
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

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show a page of a room's messages.",
        discussion: """
            Brings the history projection up to date first, then prints the newest --limit \
            messages, or those just before --before or just after --after (offsets, as \
            printed). Deleted messages show without their text. Beside a running server it takes \
            no lock and reads the history the server keeps up to date.
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
        let page: [HistoryMessage]
        if case .some = journalHolder(options.journal) {
            // A server runs and keeps History up to date: read it beside the server.
            let history = try HistoryProjection(readingOnly: ProjectionPaths(journalDirectory: options.journal).history)
            page = try history.page(room: room, before: before, after: after, limit: limit)
        } else {
            page = try await withProjections(options.journal, kinds: [.history], logger: logger) { _, runner in
                guard let history = runner.history else { preconditionFailure("the runner was asked for history") }
                return try history.page(room: room, before: before, after: after, limit: limit)
            }
        }
        switch format {
        case .json:
            for message in page { print(jsonLine(message)) }
        case .text:
            for message in page {
                let text = message.text.map { $0.debugDescription } ?? "(deleted)"
                print("\(message.offset)  \(isoTimestamp(message.sentMs))  \(message.author): \(text)\(message.editedMs != nil ? " (edited)" : "")")
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
