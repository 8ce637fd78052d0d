import Foundation
import Logging
import NIOCore
import Testing

@testable import Journal

@Suite struct SubmitTests {
    /// The chat server's decider relies on this: offsets are fixed in the order of `submit`
    /// calls, also for submissions parked behind `pendingBytesMax`, before anything is written.
    @Test func submitFixesOffsetsInCallOrderAlsoWhenParkedForRoom() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = smallConfiguration(durability: .everyBatch)
        configuration.pendingBytesMax = configuration.batchBytesMax  // 4 KiB: later submissions park
        let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        var expectedNext: UInt64 = 0
        var payloads: [String] = []
        var sawParked = false
        for n in 0..<300 {
            let records = (0..<(1 + n % 3)).map { record(n * 3 + $0) }
            let range = try journal.submit(records)
            #expect(range.first == Offset(expectedNext), "submission \(n)")
            #expect(range.count == UInt64(records.count))
            expectedNext += range.count
            payloads += records.map(string)
            sawParked = sawParked || journal.state.withLock { $0.blockedRecords > 0 }
        }
        #expect(sawParked, "the test must park submissions behind pendingBytesMax")
        #expect(try await journal.waitForCommit(of: Offset(expectedNext - 1)))
        let read = try readAll(journal)
        #expect(read.map(\.offset.value) == Array(0..<expectedNext))
        #expect(read.map { string($0.payload) } == payloads)
        await journal.close()
    }

    @Test func submitRefusesWhatAppendRefusesAndQueuesNothing() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        #expect(throws: JournalError.self) { try journal.submit([]) }
        #expect(throws: JournalError.self) { try journal.submit([ByteBuffer(repeating: 1, count: 2000)]) }
        #expect(try journal.submit([record(0)]) == OffsetRange(first: .zero, last: .zero))
        await journal.close()
        #expect(throws: JournalError.self) { try journal.submit([record(1)]) }
    }
}
