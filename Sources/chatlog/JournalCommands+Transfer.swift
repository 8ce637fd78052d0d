import ArgumentParser
import ChatModel
import Foundation
import Journal
import Logging
import NIOCore
import Projections

extension JournalCommand {
    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write chat events as JSON lines, one per event, to standard output.",
            discussion: """
                Each line is one event with its offset (see docs/protocol.md, "Exporting and \
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
