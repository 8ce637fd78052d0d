import Foundation
import Logging
import NIOCore
import Testing

@testable import Journal

@Suite struct RetentionTests {
    @Test func retentionBySizeRemovesOnlyWholeOldSegments() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = smallConfiguration()
        configuration.retention = Retention(totalBytesMax: 24 << 10)
        let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        try await appendRecords(journal, 0..<4000, perAppend: 20)
        let names = try segmentNames(directory)
        let bases = names.compactMap(JournalFiles.baseOffset(ofSegment:))
        // The retained prefix starts exactly at a segment boundary, and what is kept is intact.
        #expect(journal.earliestOffset == bases.first)
        #expect(journal.earliestOffset > .zero)
        let sizes = try names.map { try FileManager.default.attributesOfItem(atPath: directory.file($0))[.size] as? Int ?? 0 }
        #expect(sizes.dropLast().reduce(0, +) <= 24 << 10, "sealed segments fit the limit")
        let kept = try readAll(journal, from: journal.earliestOffset)
        #expect(kept.map(\.offset.value) == Array(journal.earliestOffset.value..<4000))
        #expect(kept.allSatisfy { string($0.payload) == string(record(Int($0.offset.value))) })
        #expect(throws: JournalError.self) { try journal.read(from: .zero) }
        // No index is left without its segment.
        let indexes = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".index") }
        #expect(indexes.count == names.count)
        await journal.close()
        // Reopening applies the same rule: the active segment's bytes do not count, so nothing
        // more is deleted (an open used to count them and cut one segment more than a roll).
        let reopened = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        #expect(try segmentNames(directory) == names)
        #expect(reopened.earliestOffset == journal.earliestOffset)
        #expect(try readAll(reopened, from: reopened.earliestOffset).map(\.offset) == kept.map(\.offset))
        await reopened.close()
    }

    @Test func retentionNeverDeletesAtOrAboveItsFloorAndCatchesUpWhenTheFloorRises() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = smallConfiguration()
        configuration.retention = Retention(totalBytesMax: 16 << 10, floor: .zero)
        let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        try await appendRecords(journal, 0..<3000, perAppend: 20)
        let all = try segmentNames(directory)
        #expect(all.count > 3, "past the size limit")
        #expect(journal.earliestOffset == .zero, "nothing is deleted while the floor is at 0")
        // Raised into the third segment: the two below it go, the one holding the floor stays.
        let bases = all.compactMap(JournalFiles.baseOffset(ofSegment:))
        try journal.raiseRetentionFloor(to: bases[2].advanced(by: 1))
        #expect(journal.earliestOffset == bases[2])
        #expect(try segmentNames(directory) == Array(all.dropFirst(2)))
        // It only rises; and a reopen with the floor at 0 deletes nothing more.
        try journal.raiseRetentionFloor(to: .zero)
        #expect(journal.earliestOffset == bases[2])
        await journal.close()
        let reopened = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        #expect(reopened.earliestOffset == bases[2])
        try reopened.raiseRetentionFloor(to: Offset(3000))
        #expect(try segmentNames(directory).count < all.count - 2, "the size limit applies once the floor allows it")
        #expect(try readAll(reopened, from: reopened.earliestOffset).last?.offset == Offset(2999))
        await reopened.close()
    }

    @Test func retentionByAgeNeverRemovesTheActiveSegment() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = smallConfiguration()
        configuration.retention = Retention(age: .milliseconds(1))
        let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        for start in stride(from: 0, to: 1200, by: 20) {
            _ = try await journal.append(contentsOf: (start..<(start + 20)).map(record))
            try await Task.sleep(for: .milliseconds(2))
        }
        let names = try segmentNames(directory)
        // Every roll deleted all older segments: only the active one (and none before) remains.
        #expect(names.count == 1)
        #expect(try readAll(journal, from: journal.earliestOffset).last?.offset == Offset(1199))
        await journal.close()
    }

    @Test func readersKeepWorkingWhileRetentionDeletesSegments() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = smallConfiguration()
        configuration.retention = Retention(totalBytesMax: 16 << 10)
        let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await appendRecords(journal, 0..<3000, perAppend: 10)
            }
            group.addTask {
                var reads = 0
                while journal.committedOffset < Offset(3000) {
                    let earliest = journal.earliestOffset
                    do {
                        for record in try journal.readRecords(from: earliest, maxBytes: 1 << 20) {
                            #expect(string(record.payload) == string(RetentionTests.expected(record.offset)))
                        }
                        reads += 1
                    } catch JournalError.offsetOutOfRange {
                        // Retention moved past `earliest` between the two calls: allowed.
                    }
                    await Task.yield()
                }
                #expect(reads > 0)
            }
            try await group.waitForAll()
        }
        await journal.close()
    }

    static func expected(_ offset: Offset) -> ByteBuffer { record(Int(offset.value)) }
}
