import ArgumentParser

@main
struct Chatlog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chatlog",
        abstract: "A durable group-chat server whose source of truth is an append-only journal.",
        discussion: """
            Every chat event is appended to a segmented, checksummed, LZ4-compressed journal \
            directory. These commands inspect, check and repair a journal, and measure it.

            Examples:
              chatlog journal stats --journal data/journal
              chatlog journal verify --journal data/journal
              chatlog journal inspect --journal data/journal --from 1000 --limit 20
              chatlog bench journal --events 2000000
            """,
        version: "0.1.0",
        subcommands: [JournalCommand.self, BenchCommand.self]
    )
}

struct JournalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Inspect, verify, repair and append to a journal directory.",
        subcommands: [Verify.self, Repair.self, Inspect.self, Stats.self, Append.self]
    )
}

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure chatlog against a baseline measured in the same run.",
        subcommands: [BenchJournal.self]
    )
}
