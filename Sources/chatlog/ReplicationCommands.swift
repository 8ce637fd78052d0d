import ArgumentParser
import Foundation
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
                Reads GET /api/replication. On a leader: one line per standby that has fetched \
                since the leader started (connected: a fetch within the last 5 s). On a \
                standby: its leader, whether it follows, and its lag.

                Example:
                  chatlog replication status --server http://127.0.0.1:3000
                """
        )

        @Option(help: ArgumentHelp("The server's base URL.", valueName: "url")) var server: String
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text

        func run() async throws {
            let status: ReplicationStatus
            do {
                status = try await ReplicationStatus.fetch(server: server)
            } catch {
                printError("chatlog replication status: cannot read \(server)/api/replication: \(error)")
                throw ExitCode(1)
            }
            if format == .json {
                let data = (try? ReplicationJSON.encoder.encode(status)) ?? Data()
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print("\(status.role), epoch \(status.epoch), journal end \(status.committedOffset)")
            if let leader = status.leader {
                var line = "leader \(leader.url): \(leader.state)"
                if let lag = leader.lagEvents { line += ", \(lag) events behind" }
                if let error = leader.lastError { line += " (\(error))" }
                print(line)
            }
            for standby in status.standbys {
                var line = "standby \(standby.name): \(standby.connected ? "connected" : "disconnected"), durable to \(standby.durableOffset), \(standby.lagEvents) events behind"
                if let seconds = standby.lagSeconds, seconds > 0 { line += String(format: ", last caught up %.1f s ago", seconds) }
                print(line)
            }
            if status.role == "leader" && status.standbys.isEmpty { print("no standbys") }
        }
    }
}
