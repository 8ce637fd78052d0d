import ArgumentParser
import Foundation

/// `chatlog bench ...`: each benchmark measures chatlog against a baseline measured in the same
/// run and prints its figures as JSON lines (docs/performance.md).
public struct BenchCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure chatlog against a baseline measured in the same run.",
        subcommands: [BenchJournal.self, BenchReplay.self, BenchSocketIO.self, BenchWebSocket.self, BenchLoad.self, BenchReplication.self]
    )

    public init() {}
}

/// A benchmark's result line: JSON, sorted keys, one object per line.
func resultLine(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { preconditionFailure("benchmark results are always encodable") }
    return String(decoding: data, as: UTF8.self)
}
