import ArgumentParser
import Foundation
import GRDB
import Journal
import Logging
import NIOCore

struct BenchJournal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Durable append and sequential read throughput, against SQLite in the same run.",
        discussion: """
            Appends --events synthetic chat events (JSON, about --record-bytes each, varied \
            everyday chat text) from --producers concurrent tasks, each submitting \
            --records-per-append records per call (so producers x records-per-append messages \
            are in flight, as with that many connected senders), with an fsync per batch by \
            default. Then reads everything back sequentially. Then inserts the same records into \
            SQLite through GRDB (WAL, synchronous=FULL, one transaction per batch of the \
            journal's average batch size) as the baseline.

            The last line is one JSON object: append_events_per_s, append_mb_per_s, \
            read_events_per_s, read_mb_per_s, sqlite_events_per_s, append_vs_sqlite, \
            compression_ratio, events, batches, ... Build with -c release for real figures.
            """
    )

    @Option(help: "Events to append.") var events = 2_000_000
    @Option(help: "Concurrent producer tasks.") var producers = 64
    @Option(help: "Records per append call, per producer.") var recordsPerAppend = 16
    @Option(help: "Approximate bytes per record.") var recordBytes = 200
    @Option(help: "Durability: fsync (every batch), interval (every 10 ms) or none.") var durability = "fsync"
    @Option(help: "Directory for the journal and SQLite files (default: a new temporary directory, removed afterwards).")
    var directory: String?
    @Flag(help: "Skip the SQLite baseline.") var skipSqlite = false

    func validate() throws {
        guard events > 0, producers > 0, recordsPerAppend > 0 else {
            throw ValidationError("--events, --producers and --records-per-append must be positive")
        }
        guard (60...65_536).contains(recordBytes) else { throw ValidationError("--record-bytes must be in 60...65536") }
        guard ["fsync", "interval", "none"].contains(durability) else {
            throw ValidationError("--durability must be fsync, interval or none")
        }
    }

    func run() async throws {
        let root = directory ?? NSTemporaryDirectory() + "chatlog-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: root) } }
        let journalPath = root + "/journal"
        try? FileManager.default.removeItem(atPath: journalPath)

        var generator = SyntheticChat(seed: 42)
        let pool = (0..<16_384).map { generator.event(number: $0, targetBytes: recordBytes) }
        let poolBytes = pool.reduce(0) { $0 + $1.readableBytes }
        let averageBytes = Double(poolBytes) / Double(pool.count)
        print("records: \(events) of \(String(format: "%.0f", averageBytes)) bytes on average, \(producers) producers x \(recordsPerAppend) records per append, durability \(durability)")

        var configuration = JournalConfiguration()
        configuration.durability = switch durability {
        case "interval": .interval(.milliseconds(10))
        case "none": Durability.none
        default: .everyBatch
        }
        var logger = Logger(label: "chatlog.bench")
        logger.logLevel = .warning
        let journal = try Journal.open(directory: journalPath, configuration: configuration, logger: logger)

        // Append.
        let perProducer = events / producers
        let remainder = events % producers
        let appendStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for producer in 0..<producers {
                let share = perProducer + (producer < remainder ? 1 : 0)
                let chunk = recordsPerAppend
                group.addTask {
                    var cursor = (producer * 997) % pool.count
                    var left = share
                    while left > 0 {
                        let count = min(chunk, left, pool.count - cursor)
                        _ = try await journal.append(contentsOf: pool[cursor..<(cursor + count)])
                        cursor = (cursor + count) % pool.count
                        left -= count
                    }
                }
            }
            try await group.waitForAll()
        }
        let appendSeconds = seconds(since: appendStart)

        // Read back everything, in order.
        let readStart = ContinuousClock.now
        var next = Offset.zero
        var readEvents = 0
        var readBytes = 0
        var batches = 0
        var stored = 0
        var uncompressed = 0
        var reader = journal.makeReader()
        while next < journal.committedOffset {
            let read = try reader.read(from: next, maxBytes: 4 << 20)
            for batch in read {
                batches += 1
                stored += batch.header.totalBytes
                uncompressed += Int(batch.header.uncompressedLength)
                batch.forEachRecord { _, bytes in
                    readEvents += 1
                    readBytes += bytes.count
                }
                next = batch.nextOffset
            }
        }
        let readSeconds = seconds(since: readStart)
        await journal.close()
        guard readEvents == events else {
            throw ValidationError("read back \(readEvents) events, appended \(events)")
        }
        let recordBytesTotal = Double(readBytes)
        let appendRate = Double(events) / appendSeconds
        let readRate = Double(events) / readSeconds
        let ratio = Double(uncompressed) / Double(stored)
        let averageBatch = Double(events) / Double(batches)
        print(String(format: "journal append: %.0f events/s, %.1f MB/s (%.2f s, %d batches of %.0f records on average)",
                     appendRate, recordBytesTotal / appendSeconds / 1e6, appendSeconds, batches, averageBatch))
        print(String(format: "journal read:   %.0f events/s, %.1f MB/s (%.2f s)", readRate, recordBytesTotal / readSeconds / 1e6, readSeconds))
        print(String(format: "compression:    %.2fx (%d bytes of records and framing in %d bytes of batches)", ratio, uncompressed, stored))

        // SQLite baseline: the same records, transactions of the journal's average batch size.
        var sqliteRate: Double?
        if !skipSqlite {
            let transactionSize = max(1, Int(averageBatch.rounded()))
            let blobs = pool.map { Data($0.readableBytesView) }
            let path = root + "/baseline.sqlite"
            try? FileManager.default.removeItem(atPath: path)
            var dbConfiguration = Configuration()
            dbConfiguration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA journal_mode=WAL")
                try db.execute(sql: "PRAGMA synchronous=FULL")
            }
            let queue = try DatabaseQueue(path: path, configuration: dbConfiguration)
            try await queue.write { db in
                try db.execute(sql: "CREATE TABLE messages (offset INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
            }
            let sqliteStart = ContinuousClock.now
            var offset = 0
            while offset < events {
                let end = min(events, offset + transactionSize)
                let first = offset
                try await queue.write { db in
                    let statement = try db.cachedStatement(sql: "INSERT INTO messages (offset, payload) VALUES (?, ?)")
                    for n in first..<end {
                        try statement.execute(arguments: [n, blobs[n % blobs.count]])
                    }
                }
                offset = end
            }
            let sqliteSeconds = seconds(since: sqliteStart)
            sqliteRate = Double(events) / sqliteSeconds
            print(String(format: "sqlite insert:  %.0f events/s (%.2f s, transactions of %d rows)",
                         Double(events) / sqliteSeconds, sqliteSeconds, transactionSize))
        }

        struct Result: Encodable {
            var events: Int
            var producers: Int
            var records_per_append: Int
            var record_bytes_avg: Double
            var durability: String
            var batches: Int
            var append_events_per_s: Double
            var append_mb_per_s: Double
            var read_events_per_s: Double
            var read_mb_per_s: Double
            var compression_ratio: Double
            var sqlite_events_per_s: Double?
            var append_vs_sqlite: Double?
        }
        func round(_ value: Double, _ places: Double = 2) -> Double {
            let scale = pow(10, places)
            return (value * scale).rounded() / scale
        }
        print(resultLine(Result(
            events: events, producers: producers, records_per_append: recordsPerAppend,
            record_bytes_avg: round(averageBytes, 1), durability: durability, batches: batches,
            append_events_per_s: appendRate.rounded(), append_mb_per_s: round(recordBytesTotal / appendSeconds / 1e6, 1),
            read_events_per_s: readRate.rounded(), read_mb_per_s: round(recordBytesTotal / readSeconds / 1e6, 1),
            compression_ratio: round(ratio), sqlite_events_per_s: sqliteRate?.rounded(),
            append_vs_sqlite: sqliteRate.map { round(appendRate / $0) })))
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    start.duration(to: .now).inSeconds
}
