import ArgumentParser
import Foundation
import Journal
import Replication

struct ReplicationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replication",
        abstract: "Look at a leader and its standbys.",
        subcommands: [Status.self]
    )

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a running server's role and, on a leader, each standby's durable offset and lag.",
            discussion: """
                Reads GET /api/replication, which needs the replication secret. On a leader: \
                one line per standby that has fetched since the leader started (connected: a \
                fetch within the last 5 s). On a standby: its leader, whether it follows, and \
                its lag.

                Example:
                  chatlog replication status --server http://127.0.0.1:3000 --replication-secret-file replication.secret
                """
        )

        @Option(help: ArgumentHelp("The server's base URL.", valueName: "url")) var server: String
        @Option(help: ArgumentHelp("The replication secret file the server was started with.", valueName: "file"))
        var replicationSecretFile: String
        @Option(name: .customLong("tls-ca-file"), help: ArgumentHelp("PEM certificate authorities to check an https server against (default: the system's).", valueName: "file"))
        var tlsCAFile: String?
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text

        func run() async throws {
            let status: ReplicationStatus
            do {
                var secret = try ReplicationSecret.load(path: replicationSecretFile)
                secret.trustRootsFile = tlsCAFile
                status = try await ReplicationStatus.fetch(server: server, secret: secret)
            } catch {
                throw CommandFailure(server: server, error)
            }
            if format == .json {
                let data = (try? ReplicationJSON.encoder.encode(status)) ?? Data()
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print("\(status.role), epoch \(status.epoch), journal end \(status.committedOffset)")
            if let cluster = status.cluster {
                var line = "cluster \(cluster.name), node \(cluster.node): \(cluster.role)"
                if let leader = cluster.leader, cluster.role != "leader" { line += " of \(leader)" }
                if let epoch = cluster.leaderEpoch { line += " (epoch \(epoch))" }
                if let members = cluster.inSync { line += ", in sync: \(members.joined(separator: ", "))" }
                line += cluster.leaseSecondsLeft.map { String(format: ", lease %.1f s left", $0) } ?? ", no lease"
                print(line)
            }
            if let leader = status.leader {
                var line = "leader \(leader.url): \(leader.state)"
                if let lag = leader.lagEvents { line += ", \(lag) events behind" }
                if let error = leader.lastError { line += " (\(error))" }
                print(line)
            }
            for standby in status.standbys {
                var line = "standby \(standby.name): \(standby.connected ? "connected" : "disconnected"), durable to \(standby.durableOffset), \(standby.lagEvents) events (about \(standby.lagBytes) bytes) behind"
                if let seconds = standby.lagSeconds, seconds > 0 { line += String(format: ", last caught up %.1f s ago", seconds) }
                print(line)
            }
            if status.role == "leader" && status.standbys.isEmpty { print("no standbys") }
        }
    }
}

struct PromoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Make a standby the leader, with a new leader epoch.",
        discussion: """
            With --server, a running standby is promoted (POST /api/promote, authenticated \
            with the replication secret): it stops copying from its leader, applies what it \
            copied, begins a new leader epoch one above any it has seen, takes commands, and \
            tells its old leader, which stops taking writes (fencing). With --journal, the \
            journal of a stopped standby begins the new epoch; start it then without \
            --standby-of.

            A former leader started again with --standby-of the new leader cuts what the new \
            leader never had (kept as .broken files) and follows it.

            In a cluster (serve --etcd), --server names the standby to hand leadership to \
            (a switchover): its leader stops taking commands, waits until that standby holds \
            everything, and gives leadership up through etcd, where only that standby may take \
            it; nothing acknowledged is lost and commands pause for well under a second. The \
            standby must be in the in-sync set (chatlog cluster status). A leader takes over \
            by itself when its leader dies: no promote needed then.

            Examples:
              chatlog promote --server http://127.0.0.1:3001 --replication-secret-file replication.secret
              chatlog promote --journal /var/lib/chatlog-b
            """
    )

    @Option(help: ArgumentHelp("A running standby's base URL.", valueName: "url")) var server: String?
    @Option(help: ArgumentHelp("The replication secret file (with --server).", valueName: "file")) var replicationSecretFile: String?
    @Option(name: .customLong("tls-ca-file"), help: ArgumentHelp("PEM certificate authorities to check an https server against (default: the system's).", valueName: "file"))
    var tlsCAFile: String?
    @Option(help: ArgumentHelp("A stopped standby's journal directory.", valueName: "dir")) var journal: String?
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (server == nil) != (journal == nil) else { throw ValidationError("give either --server (a running standby) or --journal (a stopped one)") }
        if server != nil && replicationSecretFile == nil { throw ValidationError("--server needs --replication-secret-file") }
    }

    func run() async throws {
        if let directory = journal {
            let logger = logging.makeLogger(label: "chatlog.promote")
            do {
                let journal = try openJournal(directory, logger: logger)
                let epoch = max(journal.leaderEpochs.current, journal.seenEpoch) + 1
                do { try journal.beginEpoch(epoch) } catch {
                    await journal.close()
                    throw error
                }
                let end = journal.committedOffset
                await journal.close()
                print("promoted \(directory): leader epoch \(epoch) from offset \(end.value); start it without --standby-of")
            } catch let error as JournalError {
                throw CommandFailure(error)
            }
            return
        }
        guard let server, let replicationSecretFile else { throw ExitCode(2) }
        do {
            var secret = try ReplicationSecret.load(path: replicationSecretFile)
            secret.trustRootsFile = tlsCAFile
            let answer = try await ReplicationStatus.promote(server: server, secret: secret)
            print(answer)
        } catch {
            throw CommandFailure(server: server, error)
        }
    }
}
