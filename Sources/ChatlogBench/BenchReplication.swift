import ArgumentParser
import Foundation
import Hummingbird
import Journal
import Logging
import NIOCore
import Replication

struct BenchReplication: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replication",
        abstract: "Catch-up of an empty standby over loopback, against a plain file copy in the same run.",
        discussion: """
            Builds a leader journal of about --bytes on disk (synthetic chat events, \
            compressed as the server stores them), then measures in the same run: a plain copy \
            of its segment files (8 MiB reads and writes, an fdatasync per 8 MiB, as the \
            standby syncs each fetch) as the baseline, and the catch-up of an empty standby \
            through the replication protocol on 127.0.0.1 (a leader's fetch endpoint on \
            Hummingbird, the standby's follower on AsyncHTTPClient, every batch checked and \
            appended byte for byte, fsynced per fetch). Then checks that the standby's \
            segment files equal the leader's.

            The last line is one JSON object: bytes, copy_mb_per_s, catch_up_mb_per_s, \
            catch_up_vs_copy. Build with -c release for real figures.
            """
    )

    @Option(help: "Approximate journal size on disk, in bytes.") var bytes: Int64 = 1 << 30
    @Option(help: "Bytes per fetch.") var fetchBytes = ReplicationProtocol.fetchBytesDefault
    @Option(help: "Directory for the journals (default: a new temporary directory, removed afterwards).")
    var directory: String?

    func validate() throws {
        guard bytes >= 1 << 20 else { throw ValidationError("--bytes must be at least 1 MiB") }
        guard ReplicationProtocol.fetchBytesRange.contains(fetchBytes) else {
            throw ValidationError("--fetch-bytes must be in \(ReplicationProtocol.fetchBytesRange)")
        }
    }

    func run() async throws {
        let root = directory ?? NSTemporaryDirectory() + "chatlog-bench-replication-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: root) } }
        var logger = Logger(label: "chatlog.bench")
        logger.logLevel = .warning

        // The leader's journal.
        var configuration = JournalConfiguration()
        configuration.durability = .none
        let leader = try Journal.open(directory: root + "/leader", configuration: configuration, logger: logger)
        var generator = SyntheticChat(seed: 7)
        let pool = (0..<16_384).map { generator.event(number: $0, targetBytes: 200) }
        var cursor = 0
        while Self.segmentBytes(root + "/leader") < bytes {
            for _ in 0..<64 {
                _ = try await leader.append(contentsOf: pool[cursor..<(cursor + 256)])
                cursor = (cursor + 256) % (pool.count - 256)
            }
        }
        let end = leader.committedOffset
        let total = Self.segmentBytes(root + "/leader")
        print(String(format: "leader journal: %.0f MB in %d events", Double(total) / 1e6, end.value))

        // Baseline: a plain copy of the segment files, synced per 8 MiB.
        let copyStart = ContinuousClock.now
        try Self.copySegments(from: root + "/leader", to: root + "/copy")
        let copySeconds = seconds(since: copyStart)
        try? FileManager.default.removeItem(atPath: root + "/copy")

        // Catch-up through the protocol.
        let secret = try ReplicationSecret(String(repeating: "b", count: 32))
        let endpoint = ReplicationLeader(journal: leader, secret: secret, logger: logger)
        let router = Router()
        endpoint.addRoutes(to: router)
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
                              logger: logger)
        var standbyConfiguration = JournalConfiguration()
        standbyConfiguration.durability = .everyBatch
        let standby = try Journal.open(directory: root + "/standby", configuration: standbyConfiguration, logger: logger)
        standby.setFollowing(true)
        let catchUpSeconds: Double = try await withThrowingTaskGroup(of: Double?.self) { group in
            group.addTask {
                try await app.runService()
                return nil
            }
            var ports = portStream.makeAsyncIterator()
            guard let port = await ports.next() else { throw ValidationError("the leader did not start") }
            var follow = ReplicationFollower.Configuration(leaderURL: "http://127.0.0.1:\(port)", secret: secret, name: "bench")
            follow.fetchBytes = fetchBytes
            let follower = ReplicationFollower(configuration: follow, journal: standby, logger: logger)
            let start = ContinuousClock.now
            group.addTask {
                try await follower.run()
                return nil
            }
            while standby.committedOffset < end {
                try await Task.sleep(for: .milliseconds(2))
            }
            let seconds = seconds(since: start)
            await follower.stop()
            group.cancelAll()
            return seconds
        } ?? 0
        await standby.close()
        await leader.close()
        let identical = Self.segmentFiles(root + "/leader") == Self.segmentFiles(root + "/standby")
        let copyRate = Double(total) / copySeconds / 1e6
        let catchUpRate = Double(total) / catchUpSeconds / 1e6
        print(String(format: "plain copy (baseline): %.0f MB/s (%.2f s)", copyRate, copySeconds))
        print(String(format: "standby catch-up:      %.0f MB/s (%.2f s), %.2fx the plain copy; segment files %@",
                     catchUpRate, catchUpSeconds, catchUpRate / copyRate, identical ? "identical" : "DIFFER"))
        print(resultLine(Result(bytes: total, events: end.value, copy_mb_per_s: copyRate.rounded(), catch_up_mb_per_s: catchUpRate.rounded(),
                              catch_up_vs_copy: (catchUpRate / copyRate * 100).rounded() / 100, identical: identical)))
        if !identical { throw ExitCode(1) }
    }

    struct Result: Encodable {
        var bytes: Int64
        var events: UInt64
        var copy_mb_per_s: Double
        var catch_up_mb_per_s: Double
        var catch_up_vs_copy: Double
        var identical: Bool
    }


    static func segmentBytes(_ directory: String) -> Int64 {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".log") }.reduce(0) { total, name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)
            return total + ((attributes?[.size] as? NSNumber)?.int64Value ?? 0)
        }
    }

    static func segmentFiles(_ directory: String) -> [String: Data] {
        var files: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".log") {
            files[name] = FileManager.default.contents(atPath: directory + "/" + name)
        }
        return files
    }

    /// Copies the segment files in 8 MiB reads and writes, with an fdatasync per 8 MiB.
    static func copySegments(from source: String, to target: String) throws {
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        for name in try FileManager.default.contentsOfDirectory(atPath: source) where name.hasSuffix(".log") {
            let input = open(source + "/" + name, O_RDONLY)
            let output = open(target + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard input >= 0, output >= 0 else { throw ValidationError("cannot open \(name) for the copy") }
            defer {
                close(input)
                close(output)
            }
            while true {
                let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                let written = buffer.withUnsafeBytes { write(output, $0.baseAddress, count) }
                guard written == count else { throw ValidationError("short write copying \(name)") }
                fdatasync(output)
            }
        }
    }
}
