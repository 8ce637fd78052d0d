import Foundation
import Logging
import NIOCore
import Testing

@testable import Journal

@Suite struct TailTests {
    @Test func concurrentReadersAndATailerWhileAppendingSeeEveryOffsetOnceInOrder() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(durability: .everyBatch), logger: .quiet)
        let total = 2000
        let producers = 8

        try await withThrowingTaskGroup(of: Void.self) { group in
            // The tailer starts before anything is written and must see each offset exactly once.
            group.addTask {
                var expected: UInt64 = 0
                for try await record in journal.records(from: .zero, readBytesMax: 2048) {
                    #expect(record.offset.value == expected)
                    #expect(record.offset < journal.committedOffset, "yielded past the committed offset")
                    let text = string(record.payload)
                    #expect(text.hasPrefix("p") && text.contains("-"))
                    expected += 1
                    if expected == UInt64(total) { break }
                }
                #expect(expected == UInt64(total))
            }
            // Readers poll from random offsets and check that batches are contiguous.
            for reader in 0..<2 {
                group.addTask {
                    var generator = SystemRandomNumberGenerator()
                    var checked = 0
                    while journal.committedOffset.value < UInt64(total) || checked == 0 {
                        let committed = journal.committedOffset.value
                        guard committed > 0 else { await Task.yield(); continue }
                        let from = UInt64.random(in: 0..<committed, using: &generator)
                        let records = try journal.readRecords(from: Offset(from), maxBytes: 4096)
                        #expect(records.first?.offset.value == from, "reader \(reader)")
                        for (index, record) in records.enumerated() {
                            #expect(record.offset.value == from + UInt64(index))
                        }
                        checked += 1
                        await Task.yield()
                    }
                }
            }
            for producer in 0..<producers {
                group.addTask {
                    for n in 0..<(total / producers) {
                        _ = try await journal.append(ByteBuffer(string: "p\(producer)-\(n)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        await journal.close()
    }

    @Test func tailFromTheMiddleThenLiveThenEndsAtClose() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        _ = try await journal.append(contentsOf: (0..<50).map(record))
        let tail = Task {
            var seen: [UInt64] = []
            for try await item in journal.records(from: Offset(30)) {
                #expect(string(item.payload) == string(record(Int(item.offset.value))))
                seen.append(item.offset.value)
            }
            return seen
        }
        _ = try await journal.append(contentsOf: (50..<60).map(record))
        while journal.committedOffset < Offset(60) { await Task.yield() }
        await journal.close()
        #expect(try await tail.value == Array(30..<60))
    }

    @Test func cancellingAWaitingTailEndsIt() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        let tail = Task {
            for try await _ in journal.records(from: .zero) {}
        }
        try await Task.sleep(for: .milliseconds(20))
        tail.cancel()
        await #expect(throws: CancellationError.self) { try await tail.value }
        await journal.close()
    }

    @Test func tailFromARetiredOffsetFails() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = smallConfiguration()
        configuration.retention = Retention(totalBytesMax: 16 << 10)
        let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        try await appendRecords(journal, 0..<2000, perAppend: 20)
        #expect(journal.earliestOffset > .zero)
        var iterator = journal.records(from: .zero).makeAsyncIterator()
        await #expect(throws: JournalError.self) { try await iterator.next() }
        await journal.close()
    }
}

