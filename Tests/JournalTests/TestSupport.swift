import Foundation
import Logging
import NIOCore
import Testing

@testable import Journal

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "chatlog-test-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.flatMap { mkdtemp($0) }.map { String(cString: $0) }
        }
        guard let made else { throw POSIXError(.EIO) }
        path = made
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// A copy of this directory (its files only, no subdirectories).
    func copy() throws -> TemporaryDirectory {
        let copy = try TemporaryDirectory()
        for name in try FileManager.default.contentsOfDirectory(atPath: path) {
            try FileManager.default.copyItem(atPath: file(name), toPath: copy.file(name))
        }
        return copy
    }
}

extension Logger {
    static let quiet: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()
}

/// Small limits so that tests roll segments and split batches with little data.
func smallConfiguration(durability: Durability = .none) -> JournalConfiguration {
    var configuration = JournalConfiguration()
    configuration.recordBytesMax = 1024
    configuration.batchBytesMax = 4096
    configuration.batchBytesTarget = 2048
    configuration.segmentBytesMax = 8 << 10
    configuration.pendingBytesMax = 8192
    configuration.indexIntervalBytes = 1024
    configuration.durability = durability
    return configuration
}

/// A deterministic record: "record <n> " padded with varied text to between 20 and 220 bytes.
func record(_ n: Int) -> ByteBuffer {
    let words = ["hello", "room", "typing", "message", "again", "soon", "lunch", "deploy", "ok", "thanks"]
    var text = "record \(n) "
    var state = UInt64(n) &* 6364136223846793005 &+ 1442695040888963407
    let length = 20 + Int(state % 200)
    while text.utf8.count < length {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        text += words[Int(state >> 33) % words.count] + " "
    }
    return ByteBuffer(string: text)
}

func string(_ buffer: ByteBuffer) -> String {
    String(buffer: buffer)
}

/// Reads every committed record from `offset` to the committed end.
func readAll(_ journal: Journal, from offset: Offset = .zero) throws -> [JournalRecord] {
    var records: [JournalRecord] = []
    var next = offset
    while next < journal.committedOffset {
        let chunk = try journal.readRecords(from: next, maxBytes: 8192)
        guard let last = chunk.last else { break }
        records += chunk
        next = last.offset.advanced(by: 1)
    }
    return records
}

func segmentNames(_ directory: TemporaryDirectory) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".log") }.sorted()
}

/// Appends `record(n)` for each n in `range`, `perAppend` records per append call.
func appendRecords(_ journal: Journal, _ range: Range<Int>, perAppend: Int) async throws {
    for start in stride(from: range.lowerBound, to: range.upperBound, by: perAppend) {
        _ = try await journal.append(contentsOf: (start..<min(start + perAppend, range.upperBound)).map(record))
    }
}

/// Opens the journal in `directory`, appends `record(0..<records)` 20 at a time (small
/// segments roll several times), and closes it.
func fillJournal(_ directory: TemporaryDirectory, records: Int, configuration: JournalConfiguration = smallConfiguration()) async throws {
    let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
    try await appendRecords(journal, 0..<records, perAppend: 20)
    await journal.close()
}
