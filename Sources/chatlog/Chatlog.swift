import ArgumentParser
import Foundation
import ChatlogBench

@main
struct Chatlog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chatlog",
        abstract: "A durable group-chat server whose source of truth is an append-only journal.",
        discussion: """
            Every chat event is appended to a segmented, checksummed, LZ4-compressed journal \
            directory; room state and message history are projections rebuilt from it. `serve` \
            runs the Socket.IO chat server on a journal; the other commands issue tokens, \
            inspect, check, repair, export and import a journal, query and rebuild its \
            projections, and measure them.

            Exit codes: 0 done; 1 the command ran and the answer is no (damage found, a \
            node refused, no such room); 2 it could not run (the journal in use or missing, a \
            node or etcd unreachable, the port taken); 64 the command line is wrong.

            Examples:
              chatlog serve --journal data/journal --dev      # development: no tokens
              chatlog serve --journal data/journal            # tokens, signed with data/journal/auth.secret
              chatlog token issue alice --journal data/journal
              chatlog journal stats --journal data/journal
              chatlog journal verify --journal data/journal
              chatlog journal inspect --journal data/journal --from 1000 --limit 20
              chatlog journal export --journal data/journal > events.jsonl
              chatlog rooms --journal data/journal
              chatlog history --journal data/journal --room general --limit 20
              chatlog projections rebuild --journal data/journal
              chatlog bench journal --events 2000000
            """,
        version: "0.1.0",
        subcommands: [Serve.self, TokenCommand.self, ReplicationCommand.self, PromoteCommand.self, ClusterCommand.self, BackupCommand.self, JournalCommand.self, ProjectionsCommand.self, RoomsCommand.self, HistoryCommand.self, SearchCommand.self, BenchCommand.self, DevCommand.self]
    )

    /// `serve`'s settings may also come from `CHATLOG_*` variables and a JSON file
    /// (`ServeSettings`): they are added to its command line before it is parsed.
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "serve", !arguments.contains("--help"), !arguments.contains("-h") {
            do {
                arguments = ["serve"] + (try await ServeSettings.merge(Array(arguments.dropFirst())))
            } catch {
                printError("chatlog serve: \(error)")
                Foundation.exit(CommandFailure.Kind.cannotRun.rawValue)
            }
        }
        await run(arguments)
    }
}

struct JournalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Inspect, verify, repair and append to a journal directory.",
        subcommands: [Verify.self, Repair.self, Truncate.self, Inspect.self, Stats.self, Append.self, Export.self, Import.self]
    )
}
