import Foundation
import Logging
import NIOCore
import Testing

@testable import Journal

@Suite struct JournalTests {
    @Test func roundTripsManyBatchesAcrossSegmentRolls() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        var expected: [String] = []
        for start in stride(from: 0, to: 1200, by: 20) {
            let records = (start..<(start + 20)).map(record)
            let range = try await journal.append(contentsOf: records)
            #expect(range == OffsetRange(first: Offset(UInt64(start)), last: Offset(UInt64(start + 19))))
            expected += records.map(string)
        }
        #expect(try segmentNames(directory).count > 3, "small segments must have rolled")
        let read = try readAll(journal)
        #expect(read.map(\.offset.value) == Array(0..<1200))
        #expect(read.map { string($0.payload) } == expected)
        await journal.close()

        let reopened = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        #expect(reopened.recovery.truncation == nil)
        #expect(reopened.nextOffset == Offset(1200))
        #expect(try readAll(reopened).map { string($0.payload) } == expected)
        #expect(try await reopened.append(record(1200)) == Offset(1200))
        await reopened.close()
        #expect(try JournalDirectory.verify(directory: directory.path, indexIntervalBytes: 1024).isClean)
    }

    @Test func concurrentAppendsGetDistinctContiguousOffsetsInOneOrder() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(durability: .everyBatch), logger: .quiet)
        let producers = 16
        let perProducer = 50
        let results = try await withThrowingTaskGroup(of: [(Offset, String)].self) { group in
            for producer in 0..<producers {
                group.addTask {
                    var mine: [(Offset, String)] = []
                    for n in 0..<perProducer {
                        let payload = ByteBuffer(string: "p\(producer)-\(n)")
                        mine.append((try await journal.append(payload), "p\(producer)-\(n)"))
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(Set(results.map(\.0.value)) == Set(0..<UInt64(producers * perProducer)))
        let read = try readAll(journal)
        let byOffset = Dictionary(uniqueKeysWithValues: results.map { ($0.0, $0.1) })
        for record in read {
            #expect(byOffset[record.offset] == string(record.payload))
        }
        // Each producer's appends appear in the order it made them.
        for producer in 0..<producers {
            let mine = read.map { string($0.payload) }.filter { $0.hasPrefix("p\(producer)-") }
            #expect(mine == (0..<perProducer).map { "p\(producer)-\($0)" })
        }
        await journal.close()
    }

    @Test func aJournalIsCreatedWithTheDirectoriesAboveItThatAreMissing() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let nested = directory.path + "/data/nodes/a/journal/"
        let journal = try Journal.open(directory: nested, configuration: smallConfiguration(), logger: .quiet)
        #expect(try await journal.append(record(0)) == Offset(0))
        await journal.close()
        let reopened = try Journal.open(directory: nested, configuration: smallConfiguration(), logger: .quiet)
        #expect(reopened.nextOffset == Offset(1))
        await reopened.close()
        // A parent that is a file is not a directory to create below: the error names it.
        #expect(FileManager.default.createFile(atPath: directory.path + "/plain", contents: Data()))
        #expect(throws: JournalError.self) { try Journal.open(directory: directory.path + "/plain/journal", logger: .quiet) }
    }

    @Test func oversizeRecordIsRefusedAndNothingIsWritten() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        _ = try await journal.append(record(0))
        let big = ByteBuffer(repeating: 0x61, count: 1025)
        await #expect(throws: JournalError.self) { try await journal.append(contentsOf: [record(1), big]) }
        do {
            _ = try await journal.append(big)
            Issue.record("oversize record was accepted")
        } catch let error as JournalError {
            guard case .recordTooLarge(1025, 1024) = error else { throw error }
            #expect(error.description.contains("exceeds the limit of 1024 bytes"))
        }
        #expect(journal.nextOffset == Offset(1))
        #expect(try await journal.append(record(1)) == Offset(1))
        await journal.close()
    }

    @Test func emptyAppendIsRefused() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        await #expect(throws: JournalError.self) { try await journal.append(contentsOf: [ByteBuffer]()) }
        await journal.close()
    }

    @Test func appendAfterCloseFails() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        await journal.close()
        await journal.close()
        await #expect(throws: JournalError.self) { try await journal.append(record(0)) }
    }

    /// A write that fails while the encoder waits to hand over its next group (a full disk
    /// under load) once left the hand-off's semaphore below its initial count, and libdispatch
    /// trapped when the closed journal was released (SIGILL on stop after a full disk).
    @Test func aJournalWhoseWriteFailedUnderLoadClosesAndIsReleasedCleanly() async throws {
        for attempt in 0..<40 {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            var configuration = smallConfiguration(durability: .everyBatch)
            configuration.failWritesAfterBytes = Int64(2048 + attempt * 97)
            let opened = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
            let refused = await withTaskGroup(of: Bool.self) { group in
                for producer in 0..<8 {
                    group.addTask {
                        for n in 0..<40 {
                            do { _ = try await opened.append(record(producer * 100 + n)) } catch { return true }
                        }
                        return false
                    }
                }
                return await group.reduce(false) { $0 || $1 }
            }
            #expect(refused, "the injected failure must refuse appends")
            #expect(!opened.isHealthy)
            await opened.close()
            // The journal is released at the end of this iteration, or once its writer and
            // encoder threads return: a trap there ends the test process.
            try await Task.sleep(for: .milliseconds(5))
        }
    }
    @Test func appendsLargerThanThePendingQueueWaitForRoomAndKeepOrder() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(durability: .everyBatch), logger: .quiet)
        // 40 records of up to 1 KiB at once against an 8 KiB queue: admitted in slices.
        let records = (0..<40).map { n in ByteBuffer(repeating: UInt8(n), count: 1000) }
        async let first = journal.append(contentsOf: records)
        async let second = journal.append(contentsOf: records)
        let ranges = try await [first, second]
        #expect(ranges.map(\.count) == [40, 40])
        let read = try readAll(journal)
        #expect(read.count == 80)
        await journal.close()
    }

    @Test func invalidConfigurationIsRefusedWithTheLimitNamed() throws {
        var configuration = JournalConfiguration()
        configuration.batchBytesMax = configuration.recordBytesMax
        #expect(throws: JournalError.self) { try configuration.validate() }
        do {
            try configuration.validate()
        } catch {
            #expect(error.description.contains("batchBytesMax"))
        }
        configuration = JournalConfiguration()
        configuration.segmentBytesMax = 1000
        #expect(throws: JournalError.self) { try configuration.validate() }
        configuration = JournalConfiguration()
        configuration.pendingBytesMax = 10
        #expect(throws: JournalError.self) { try configuration.validate() }
    }

    @Test func secondWriterInTheSameProcessFailsNamingTheHolder() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        let error = try #require(throws: JournalError.self) {
            try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        }
        guard case .locked(_, let pid) = error else { throw error }
        #expect(pid == getpid())
        #expect(error.description.contains("locked by process \(getpid())"))
        await journal.close()
        // Once closed, the lock is free again.
        let again = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        await again.close()
    }

    @Test func readBelowEarliestOrPastCommittedIsAnError() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        _ = try await journal.append(contentsOf: (0..<3).map(record))
        #expect(try journal.read(from: Offset(3)).isEmpty)
        #expect(throws: JournalError.self) { try journal.read(from: Offset(4)) }
        await journal.close()
    }

    @Test func readStartsInsideABatchAndRespectsMaxBytes() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        try await appendRecords(journal, 0..<100, perAppend: 10)
        let records = try journal.readRecords(from: Offset(15), maxBytes: 1)
        #expect(records.map(\.offset.value) == Array(15..<20), "one whole batch, from the requested offset")
        let batches = try journal.read(from: Offset(15), maxBytes: 1)
        #expect(batches.count == 1 && batches[0].baseOffset == Offset(10))
        await journal.close()
    }
}
