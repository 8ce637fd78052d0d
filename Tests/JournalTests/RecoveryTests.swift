import Foundation
import Logging
import NIOCore
import Testing

@testable import Journal

/// Crash and corruption cases: torn tails, flipped bits, damaged sealed segments, lost indexes.
@Suite struct RecoveryTests {
    /// A journal of one segment whose batches are the given sizes; returns the batch positions.
    func makeFixture(batches: [Int], in directory: TemporaryDirectory) async throws -> [RecordBatch] {
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        var next = 0
        for size in batches {
            _ = try await journal.append(contentsOf: (next..<(next + size)).map(record))
            next += size
        }
        let written = try journal.read(from: .zero, maxBytes: 1 << 20)
        await journal.close()
        #expect(written.count == batches.count)
        return written
    }

    func segmentSize(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
    }

    @Test func recoveryTruncatesTornTailAtEveryByteOfTheFinalBatch() async throws {
        let fixture = try TemporaryDirectory()
        defer { fixture.remove() }
        let batches = try await makeFixture(batches: [3, 4, 5], in: fixture)
        let segment = fixture.file(JournalFiles.segmentName(.zero))
        let fullSize = try segmentSize(segment)
        let last = try #require(batches.last)
        #expect(Int(last.position.value) + last.header.totalBytes == fullSize)
        let survivors = (0..<Int(last.baseOffset.value)).map { string(record($0)) }

        for cut in Int(last.position.value)..<fullSize {
            let copy = try fixture.copy()
            defer { copy.remove() }
            let handle = try #require(FileHandle(forWritingAtPath: copy.file(JournalFiles.segmentName(.zero))))
            try handle.truncate(atOffset: UInt64(cut))
            try handle.close()

            let journal = try Journal.open(directory: copy.path, configuration: smallConfiguration(), logger: .quiet)
            #expect(journal.nextOffset == last.baseOffset, "cut at \(cut)")
            #expect(try readAll(journal).map { string($0.payload) } == survivors, "cut at \(cut)")
            if cut == Int(last.position.value) {
                #expect(journal.recovery.truncation == nil)
            } else {
                let truncation = try #require(journal.recovery.truncation, "cut at \(cut)")
                #expect(truncation.position == last.position)
                #expect(truncation.offset == last.baseOffset)
                #expect(truncation.bytesCut == Int64(cut) - last.position.value)
                #expect(try segmentSize(truncation.brokenCopy) == cut - Int(last.position.value))
            }
            // The journal continues exactly where the good data ends.
            #expect(try await journal.append(record(99)) == last.baseOffset)
            await journal.close()
            #expect(try JournalDirectory.verify(directory: copy.path, indexIntervalBytes: 1024).isClean)
        }
    }

    @Test func everySingleBitFlipIsDetected() async throws {
        let fixture = try TemporaryDirectory()
        defer { fixture.remove() }
        _ = try await makeFixture(batches: [2, 3], in: fixture)
        let name = JournalFiles.segmentName(.zero)
        let original = try Data(contentsOf: URL(fileURLWithPath: fixture.file(name)))
        let records = (0..<5).map { string(record($0)) }

        for byte in 0..<original.count {
            for bit in 0..<8 {
                let copy = try fixture.copy()
                defer { copy.remove() }
                var flipped = original
                flipped[byte] ^= UInt8(1 << bit)
                try flipped.write(to: URL(fileURLWithPath: copy.file(name)))

                let report = try JournalDirectory.verify(directory: copy.path, indexIntervalBytes: 1024)
                #expect(!report.isClean, "flip of bit \(bit) of byte \(byte) went unnoticed by verify")

                // Open cuts the damaged batch and everything after it; it never serves flipped bytes.
                let journal = try Journal.open(directory: copy.path, configuration: smallConfiguration(), logger: .quiet)
                #expect(journal.recovery.truncation != nil, "flip of bit \(bit) of byte \(byte)")
                let survived = try readAll(journal).map { string($0.payload) }
                #expect(Array(records.prefix(survived.count)) == survived, "flip of bit \(bit) of byte \(byte)")
                await journal.close()
            }
        }
    }

    @Test func corruptionInASealedSegmentFailsOpenAndVerifyNamesIt() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await fillJournal(directory, records: 1200)
        let segments = try segmentNames(directory)
        #expect(segments.count >= 3)
        // Damage a payload byte of the second batch of the first (sealed) segment.
        let batches = try await withJournal(directory) { try $0.read(from: .zero, maxBytes: 1) + $0.read(from: Offset(20), maxBytes: 1) }
        let target = try #require(batches.last)
        let path = directory.file(segments[0])
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let position = Int(target.position.value) + BatchHeader.size + 3
        bytes[position] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: path))

        let error = try #require(throws: JournalError.self) {
            try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        }
        guard case .corrupt(let report) = error else { throw error }
        #expect(report.file == path)
        #expect(report.position == target.position)
        #expect(report.expectedOffset == Offset(20))
        #expect(error.description.contains(path) && error.description.contains("byte \(target.position)"))

        let verified = try JournalDirectory.verify(directory: directory.path, indexIntervalBytes: 1024)
        #expect(verified.problems.map(\.file) == [path])
        #expect(verified.problems.first?.position == target.position)
        // Nothing was modified by the failed open or by verify.
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
    }

    @Test func sealedCorruptionIsAReadErrorWhenOnlyTheTailIsVerifiedAtOpen() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = smallConfiguration()
        configuration.verification = .lastSegmentTail
        let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        try await appendRecords(journal, 0..<1200, perAppend: 20)
        await journal.close()
        let path = directory.file(try segmentNames(directory)[0])
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[BatchHeader.size + 1] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))

        let reopened = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
        #expect(reopened.nextOffset == Offset(1200))
        let error = try #require(throws: JournalError.self) { try reopened.read(from: .zero) }
        guard case .corrupt(let report) = error else { throw error }
        #expect(report.file == path && report.position == .zero)
        await reopened.close()
    }

    @Test func deletedOrDamagedIndexIsRebuiltWithIdenticalReads() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        for verification in [OpenVerification.allSegments, .lastSegmentTail] {
            var configuration = smallConfiguration()
            configuration.verification = verification
            let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
            for start in stride(from: Int(journal.nextOffset.value), to: Int(journal.nextOffset.value) + 1200, by: 20) {
                _ = try await journal.append(contentsOf: (start..<(start + 20)).map(record))
            }
            let before = try (0..<Int(journal.nextOffset.value)).map { try journal.readRecords(from: Offset(UInt64($0)), maxBytes: 1).map { string($0.payload) } }
            await journal.close()
            let indexes = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".index") }.sorted()
            let originals = try indexes.map { try Data(contentsOf: URL(fileURLWithPath: directory.file($0))) }
            #expect(originals.allSatisfy { $0.count > SegmentIndex.headerBytes }, "each segment has index entries")
            try FileManager.default.removeItem(atPath: directory.file(indexes[0]))
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: directory.file(indexes[1])))
            // A stale entry pointing into the middle of a batch of the last segment.
            var stale = originals[indexes.count - 1]
            stale.append(contentsOf: [0xFF, 0, 0, 0, 0x07, 0, 0, 0])
            try stale.write(to: URL(fileURLWithPath: directory.file(indexes[indexes.count - 1])))

            let reopened = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
            #expect(reopened.recovery.truncation == nil, "a bad index never causes data to be cut")
            #expect(Set(reopened.recovery.rebuiltIndexes).isSuperset(of: [indexes[0], indexes[1], indexes[indexes.count - 1]]))
            let after = try (0..<Int(reopened.nextOffset.value)).map { try reopened.readRecords(from: Offset(UInt64($0)), maxBytes: 1).map { string($0.payload) } }
            #expect(after == before)
            await reopened.close()
            let rebuilt = try indexes.map { try Data(contentsOf: URL(fileURLWithPath: directory.file($0))) }
            #expect(rebuilt == originals)
        }
    }

    @Test func leftoverTemporaryAndOrphanIndexFilesAreRemoved() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try await makeFixture(batches: [1], in: directory)
        try Data([1]).write(to: URL(fileURLWithPath: directory.file("00000000000000000000.index.tmp")))
        try Data([1]).write(to: URL(fileURLWithPath: directory.file("00000000000000000777.index")))
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        #expect(Set(journal.recovery.removedFiles) == ["00000000000000000000.index.tmp", "00000000000000000777.index"])
        await journal.close()
    }

    @Test func aMissingMiddleSegmentFailsOpen() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await fillJournal(directory, records: 1200)
        let segments = try segmentNames(directory)
        try FileManager.default.removeItem(atPath: directory.file(segments[1]))
        let error = try #require(throws: JournalError.self) {
            try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        }
        guard case .corrupt(let report) = error, case .offsetGap = report.kind else { throw error }
        #expect(report.file == directory.file(segments[2]))
    }

    @Test func aDirectoryOfAnotherFormatIsRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try Data("something else\n".utf8).write(to: URL(fileURLWithPath: directory.file(JournalFiles.metaName)))
        let error = try #require(throws: JournalError.self) {
            try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        }
        guard case .unsupportedJournal = error else { throw error }
    }
}

/// Opens the journal, runs `body`, closes it.
func withJournal<T>(_ directory: TemporaryDirectory, configuration: JournalConfiguration = smallConfiguration(),
                    _ body: (Journal) throws -> T) async throws -> T {
    let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: .quiet)
    do {
        let result = try body(journal)
        await journal.close()
        return result
    } catch {
        await journal.close()
        throw error
    }
}
