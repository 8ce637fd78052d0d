import ArgumentParser
import Foundation
import Journal
import Logging
import NIOCore

extension JournalCommand {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every batch of every segment; change nothing.",
            discussion: """
                Reads each segment, checking batch headers, CRC-32C checksums, LZ4 payloads, \
                record framing and the continuity of offsets. Prints one line per problem with \
                the file, byte position, offset and what is wrong. Takes no lock, so it can run \
                beside a server (a batch being written at that moment may show as a torn tail).

                Exit status: 0 when the journal is clean, 1 when any problem was found.
                A torn tail of the last segment is cut by `chatlog journal repair` (or by the \
                next open); damage anywhere else needs the segment restored from a replica.
                """
        )

        @OptionGroup var options: JournalOptions
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text

        func run() async throws {
            let report = try JournalDirectory.verify(directory: options.journal)
            switch format {
            case .text:
                for problem in report.problems {
                    print("problem: \(problem.file) byte \(problem.position) offset \(problem.expectedOffset): \(problem.kind)")
                }
                for note in report.indexNotes { print("note: \(note)") }
                print("\(report.isClean ? "clean" : "CORRUPT"): \(report.segments) segments, \(report.batches) batches, \(report.records) records, \(report.bytes) bytes, \(report.problems.count) problems")
            case .json:
                struct Problem: Encodable {
                    var file: String
                    var position: Int64
                    var offset: UInt64
                    var problem: String
                }
                struct Output: Encodable {
                    var clean: Bool
                    var segments: Int
                    var batches: Int
                    var records: UInt64
                    var bytes: Int64
                    var problems: [Problem]
                    var index_notes: [String]
                }
                print(jsonLine(Output(
                    clean: report.isClean, segments: report.segments, batches: report.batches, records: report.records,
                    bytes: report.bytes,
                    problems: report.problems.map { Problem(file: $0.file, position: $0.position.value,
                                                             offset: $0.expectedOffset.value, problem: $0.kind.description) },
                    index_notes: report.indexNotes)))
            }
            if !report.isClean { throw ExitCode(1) }
        }
    }

    struct Repair: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cut a torn or corrupt tail off the last segment and rebuild stale indexes.",
            discussion: """
                Does explicitly what opening the journal does: takes the journal's lock, checks \
                every segment, cuts the last segment at its first damaged batch (keeping the cut \
                bytes as <segment>.<position>.broken) and rewrites missing or stale index files. \
                Prints what it did. Damage in an older segment is not repairable here: the \
                command fails naming the file and byte position.
                """
        )

        @OptionGroup var options: JournalOptions
        @OptionGroup var logging: LoggingOptions

        func run() async throws {
            let logger = logging.makeLogger(label: "chatlog.journal")
            let journal = try openJournal(options.journal, logger: logger)
            let recovery = journal.recovery
            await journal.close()
            if let cut = recovery.truncation {
                print("cut \(cut.bytesCut) bytes from \(cut.file) at byte \(cut.position) (offset \(cut.offset) onward): \(cut.kind)")
                print("kept the cut bytes in \(cut.brokenCopy)")
            } else {
                print("no damaged tail")
            }
            for index in recovery.rebuiltIndexes { print("rebuilt index \(index)") }
            for file in recovery.removedFiles { print("removed leftover \(file)") }
            print("journal ends at offset \(recovery.nextOffset) in \(recovery.segmentCount) segments")
        }
    }

    struct Truncate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cut a stopped node's journal back to an offset (a standby in conflict with its leader).",
            discussion: """
                For a standby whose leader answers conflict: both nodes wrote under the same \
                leader epoch (each was promoted without knowing of the other), so the standby \
                cannot follow without losing what it alone holds, and it does not cut it by \
                itself. Decide which node's records to keep; to keep the leader's, stop the \
                standby, cut its journal back to the offset the conflict names, and start it \
                again. The offset must be where a batch starts; the cut bytes are kept as \
                <segment>.log.<position>.broken; leader epochs that began past it are \
                forgotten, and the projections are rebuilt at the next start.

                Example:
                  chatlog journal truncate --journal /var/lib/chatlog-b --to 18234
                """
        )

        @OptionGroup var options: JournalOptions
        @Option(help: ArgumentHelp("The offset the journal ends at afterwards.", valueName: "offset")) var to: UInt64
        @OptionGroup var logging: LoggingOptions

        func run() async throws {
            let logger = logging.makeLogger(label: "chatlog.journal")
            guard FileManager.default.fileExists(atPath: options.journal + "/journal.meta") else {
                throw CommandFailure.cannotRun("no journal at \(options.journal) (check --journal)")
            }
            do {
                guard let cut = try Journal.truncate(directory: options.journal, to: Offset(to), logger: logger) else {
                    print("the journal ends at or before offset \(to): nothing to cut")
                    return
                }
                // The projections may hold cut events: rebuilt at the next start.
                let projections = options.journal + "/projections"
                for name in ["room-state.snapshot", "history.sqlite", "history.sqlite-wal", "history.sqlite-shm"] {
                    try? FileManager.default.removeItem(atPath: projections + "/" + name)
                }
                print("cut offsets \(cut.from)..<\(cut.to) (\(cut.bytes) bytes), kept in \(cut.brokenCopies.joined(separator: ", "))")
            } catch {
                throw CommandFailure(error)
            }
        }
    }

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print segments, batches and records.",
            discussion: """
                Text output shows each segment, each batch (offsets, record count, stored and \
                uncompressed bytes, compression ratio, codec, leader epoch, time) and each \
                record (UTF-8 text, or base64 when not text). JSON output is one object per \
                batch, per line. Read-only; takes no lock.
                """
        )

        @OptionGroup var options: JournalOptions
        @Option(help: "First offset to show.") var from: UInt64 = 0
        @Option(help: "Most records to show.") var limit: Int = 100
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text
        @Flag(inversion: .prefixedNo, help: "Show records, not only batches.") var records = true

        func validate() throws {
            guard limit > 0 else { throw ValidationError("--limit must be positive") }
        }

        struct BatchJSON: Encodable {
            var segment: String
            var position: Int64
            var base_offset: UInt64
            var last_offset: UInt64
            var record_count: UInt32
            var stored_bytes: Int
            var uncompressed_bytes: UInt32
            var compression_ratio: Double
            var codec: String
            var leader_epoch: UInt32
            var first_timestamp: String
            var last_timestamp: String
            var records: [RecordJSON]?
        }

        struct RecordJSON: Encodable {
            var offset: UInt64
            var bytes: Int
            var text: String?
            var base64: String?
        }

        func run() async throws {
            let segments = try JournalDirectory.segments(in: options.journal)
            var shown = 0
            for (index, segment) in segments.enumerated() {
                if index + 1 < segments.count, segments[index + 1].baseOffset.value <= from { continue }
                if format == .text {
                    print("segment \((segment.path as NSString).lastPathComponent) base \(segment.baseOffset) bytes \(segment.sizeBytes)")
                }
                var done = false
                try JournalDirectory.walk(segment, decode: records) { step in
                    guard !done else { return }
                    switch step {
                    case .problem(let problem):
                        printError("problem: \(problem)")
                        done = true
                    case .batch(let batch):
                        guard batch.nextOffset.value > from else { return }
                        let shownRecords = batch.records.filter { $0.offset.value >= from }.prefix(limit - shown)
                        print(describe(batch, segment: segment, records: Array(shownRecords)))
                        shown += records ? shownRecords.count : Int(batch.header.recordCount)
                        done = shown >= limit
                    }
                }
                if done { break }
            }
        }

        func describe(_ batch: RecordBatch, segment: SegmentFileInfo, records shownRecords: [JournalRecord]) -> String {
            let header = batch.header
            let ratio = Double(header.uncompressedLength) / Double(max(1, header.payloadLength))
            switch format {
            case .json:
                return jsonLine(BatchJSON(
                    segment: (segment.path as NSString).lastPathComponent, position: batch.position.value,
                    base_offset: header.baseOffset.value, last_offset: header.lastOffset.value,
                    record_count: header.recordCount, stored_bytes: header.totalBytes,
                    uncompressed_bytes: header.uncompressedLength, compression_ratio: (ratio * 100).rounded() / 100,
                    codec: header.codec.description, leader_epoch: header.leaderEpoch,
                    first_timestamp: isoTimestamp(header.firstTimestampMs), last_timestamp: isoTimestamp(header.lastTimestampMs),
                    records: records ? shownRecords.map { record in
                        let bytes = Array(record.payload.readableBytesView)
                        let text = String(validating: bytes, as: UTF8.self)
                        return RecordJSON(offset: record.offset.value, bytes: bytes.count, text: text,
                                          base64: text == nil ? Data(bytes).base64EncodedString() : nil)
                    } : nil))
            case .text:
                var lines = ["  batch @\(batch.position) offsets \(header.baseOffset)...\(header.lastOffset) (\(header.recordCount) records) \(header.totalBytes) bytes stored, \(header.uncompressedLength) uncompressed (\(String(format: "%.2f", ratio))x \(header.codec)) epoch \(header.leaderEpoch) \(isoTimestamp(header.lastTimestampMs))"]
                for record in shownRecords {
                    let bytes = Array(record.payload.readableBytesView)
                    let shown = String(validating: bytes, as: UTF8.self).map { $0.debugDescription }
                        ?? "base64:" + Data(bytes).base64EncodedString()
                    lines.append("    \(record.offset) \(shown)")
                }
                return lines.joined(separator: "\n")
            }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print totals: events, bytes on disk, compression ratio, segments, offsets and times.",
            discussion: "Reads batch headers and checks CRCs; read-only and takes no lock."
        )

        @OptionGroup var options: JournalOptions
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text

        struct Output: Encodable {
            var events: UInt64 = 0
            var batches = 0
            var segments = 0
            var bytes_on_disk: Int64 = 0
            var uncompressed_bytes: Int64 = 0
            var compression_ratio: Double = 0
            var first_offset: UInt64?
            var last_offset: UInt64?
            var first_timestamp: String?
            var last_timestamp: String?
            var problems = 0
        }

        func run() async throws {
            var output = Output()
            var stored: Int64 = 0
            var firstMs: Int64?
            var lastMs: Int64?
            for segment in try JournalDirectory.segments(in: options.journal) {
                output.segments += 1
                output.bytes_on_disk += segment.sizeBytes
                try JournalDirectory.walk(segment, decode: false) { step in
                    switch step {
                    case .problem(let problem):
                        output.problems += 1
                        printError("problem: \(problem)")
                    case .batch(let batch):
                        let header = batch.header
                        output.batches += 1
                        output.events += UInt64(header.recordCount)
                        stored += Int64(header.payloadLength)
                        output.uncompressed_bytes += Int64(header.uncompressedLength)
                        if output.first_offset == nil {
                            output.first_offset = header.baseOffset.value
                            firstMs = header.firstTimestampMs
                        }
                        output.last_offset = header.lastOffset.value
                        lastMs = header.lastTimestampMs
                    }
                }
            }
            let indexBytes = try FileManager.default.contentsOfDirectory(atPath: options.journal)
                .filter { $0.hasSuffix(".index") }
                .reduce(Int64(0)) { total, name in
                    let size = (try? FileManager.default.attributesOfItem(atPath: options.journal + "/" + name)[.size] as? Int) ?? 0
                    return total + Int64(size)
                }
            output.bytes_on_disk += indexBytes
            output.first_timestamp = firstMs.map(isoTimestamp)
            output.last_timestamp = lastMs.map(isoTimestamp)
            output.compression_ratio = stored > 0 ? (Double(output.uncompressed_bytes) / Double(stored) * 100).rounded() / 100 : 0
            switch format {
            case .json:
                print(jsonLine(output))
            case .text:
                print("""
                    events             \(output.events)
                    batches            \(output.batches)
                    segments           \(output.segments)
                    bytes on disk      \(output.bytes_on_disk)
                    uncompressed bytes \(output.uncompressed_bytes)
                    compression ratio  \(String(format: "%.2f", output.compression_ratio))
                    first offset       \(output.first_offset.map(String.init) ?? "-")  \(output.first_timestamp ?? "")
                    last offset        \(output.last_offset.map(String.init) ?? "-")  \(output.last_timestamp ?? "")
                    """)
            }
            if output.problems > 0 { throw ExitCode(1) }
        }
    }

    struct Append: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Append each line of standard input as one record and print its offset.",
            discussion: """
                Takes the journal's lock for as long as it runs (a second writer fails naming \
                this process). Each line, without its newline, becomes one record; each is \
                durable before its offset is printed. For scripts and tests; the chat server \
                appends events itself.
                """
        )

        @OptionGroup var options: JournalOptions
        @OptionGroup var logging: LoggingOptions

        func run() async throws {
            let journal = try openJournal(options.journal, logger: logging.makeLogger(label: "chatlog.journal"), create: true)
            do {
                while let line = readLine(strippingNewline: true) {
                    let offset = try await journal.append(ByteBuffer(string: line))
                    FileHandle.standardOutput.write(Data("\(offset)\n".utf8))
                }
            } catch {
                await journal.close()
                throw error
            }
            await journal.close()
        }
    }
}
