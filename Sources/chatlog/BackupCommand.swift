import ArgumentParser
import ChatServer
import Foundation
import Journal
import Replication

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy a running server's journal into a new directory that serve can open.",
        discussion: """
            The backup is a journal: its segments are the source's, byte for byte (the sealed \
            ones whole, the active one up to a committed offset), with the room-state snapshot, \
            which covers no more than the copy holds. Restore it by serving it: \
            `chatlog serve --journal DIR` (projections it lacks are rebuilt on start).

            --server copies from a running leader over the replication protocol (the \
            replication secret; in a cluster, up to the commit point, which no failover can \
            remove). --journal copies from a journal directory, without its lock, so beside a \
            server writing it (up to the last whole batch when it is read). Either way the \
            server goes on serving. The copy is written into DIR.partial and renamed to DIR \
            once complete and verified; DIR must be missing or empty.

            A source whose retention deleted the start (its journal begins after offset 0) \
            gives a backup that begins there too: its rooms come from the snapshot, and its \
            scroll-back holds the messages from that offset on.

            Examples:
              chatlog backup --server http://127.0.0.1:3000 --replication-secret-file replication.secret --to /backups/chat-2026-12-07
              chatlog backup --journal /var/lib/chatlog/journal --to /backups/chat-2026-12-07
            """
    )

    @Option(help: ArgumentHelp("A running leader's base URL.", valueName: "url")) var server: String?
    @Option(help: ArgumentHelp("The replication secret file (with --server).", valueName: "file")) var replicationSecretFile: String?
    @Option(name: .customLong("tls-ca-file"), help: ArgumentHelp("PEM certificate authorities to check an https server against (default: the system's).", valueName: "file"))
    var tlsCAFile: String?
    @Option(help: ArgumentHelp("A journal directory to copy (a server may be running on it).", valueName: "dir")) var journal: String?
    @Option(help: ArgumentHelp("The new backup's directory (missing or empty).", valueName: "dir")) var to: String
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (server == nil) != (journal == nil) else { throw ValidationError("give either --server (a running leader) or --journal (a journal directory)") }
        if server != nil && replicationSecretFile == nil { throw ValidationError("--server needs --replication-secret-file") }
        guard !to.isEmpty else { throw ValidationError("--to must name a directory") }
    }

    func run() async throws {
        let logger = logging.makeLogger(label: "chatlog.backup")
        let source: Backup.Source
        if let directory = journal {
            guard FileManager.default.fileExists(atPath: directory + "/journal.meta") else {
                throw CommandFailure.cannotRun("no journal at \(directory) (check --journal)")
            }
            source = .journal(directory)
        } else if let server, let replicationSecretFile {
            var secret: ReplicationSecret
            do { secret = try ReplicationSecret.load(path: replicationSecretFile) } catch { throw CommandFailure(server: server, error) }
            secret.trustRootsFile = tlsCAFile
            source = .server(ReplicationFollower.Configuration(leaderURL: server.hasSuffix("/") ? String(server.dropLast()) : server,
                                                               secret: secret, name: "backup"))
        } else {
            throw ExitCode(64)
        }
        let started = ContinuousClock.now
        let summary: Backup.Summary
        do {
            summary = try await Backup.run(from: source, to: to, logger: logger)
        } catch let error as BackupError {
            switch error {
            case .destinationNotEmpty, .raced: throw CommandFailure.cannotRun("\(error)")
            case .damaged: throw CommandFailure.refused("\(error)")
            }
        } catch let error as JournalError {
            throw CommandFailure(error)
        } catch {
            if let server { throw CommandFailure(server: server, error) }
            throw CommandFailure.cannotRun("\(error)")
        }
        let seconds = started.duration(to: .now).inSeconds
        if format == .json {
            print(jsonLine(Report(directory: to, firstOffset: summary.firstOffset.value, endOffset: summary.endOffset.value,
                                  segments: summary.segments, bytes: summary.bytes, snapshotOffset: summary.snapshotOffset?.value,
                                  seconds: seconds)))
            return
        }
        let state = summary.snapshotOffset.map { "room state at offset \($0)" } ?? "no room-state snapshot (rebuilt on start)"
        let size = String(format: "%.1f MB", Double(summary.bytes) / 1e6)
        print("backed up offsets \(summary.firstOffset.value)..<\(summary.endOffset.value) (\(summary.segments) segments, \(size); \(state))"
              + " to \(to) in \(String(format: "%.2f", seconds)) s; restore: chatlog serve --journal \(to)")
    }

    struct Report: Encodable {
        var directory: String
        var firstOffset: UInt64
        var endOffset: UInt64
        var segments: Int
        var bytes: Int64
        var snapshotOffset: UInt64?
        var seconds: Double
    }
}
