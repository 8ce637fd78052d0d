import ArgumentParser
import Foundation
import Journal
import Logging

/// The journal directory every journal command takes.
struct JournalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The journal directory.", valueName: "dir"))
    var journal: String = "data/journal"

    func validate() throws {
        guard !journal.isEmpty else { throw ValidationError("--journal must name a directory") }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text
    case json
}

struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    /// A logger writing to standard error, so standard output stays machine-readable.
    /// Bootstraps the logging system: call it once, from the command's `run`.
    func makeLogger(label: String) -> Logger {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Writes one line to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// JSON for command output: sorted snake_case keys (as `journal export` and the HTTP API
/// write them), one object per line.
func jsonLine(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    guard let data = try? encoder.encode(value) else { preconditionFailure("command output is always encodable") }
    return String(decoding: data, as: UTF8.self)
}

/// Milliseconds since the epoch as an ISO 8601 UTC timestamp.
func isoTimestamp(_ ms: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
}

/// A duration written as a positive whole number and a unit: ms, s, m, h or d (`500ms`, `24h`).
func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (unit, milliseconds) in units where text.hasSuffix(unit) {
        guard let value = Int64(text.dropLast(unit.count)), value > 0 else { return nil }
        return .milliseconds(value * milliseconds)
    }
    return nil
}
