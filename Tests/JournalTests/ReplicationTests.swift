import Foundation
import Logging
import NIOCore
import Testing

@testable import Journal

/// A standby's journal copies its leader's batches byte for byte (`readRaw` on the leader,
/// `appendReplicated` on the standby), and refuses anything that is not a valid continuation.
@Suite struct ReplicationTests {
    /// Copies everything committed on `leader` that `standby` lacks, `maxBytes` per read.
    @discardableResult
    func copy(from leader: Journal, to standby: Journal, maxBytes: Int) async throws -> Int {
        var reads = 0
        while standby.nextOffset < leader.committedOffset {
            let raw = try leader.readRaw(from: standby.nextOffset, maxBytes: maxBytes)
            #expect(!raw.isEmpty)
            let next = try await standby.appendReplicated(raw)
            #expect(next == raw.nextOffset)
            reads += 1
        }
        return reads
    }

    let configuration = smallConfiguration(durability: .everyBatch)

    func open(_ leader: TemporaryDirectory, _ standby: TemporaryDirectory) throws -> (Journal, Journal) {
        (try Journal.open(directory: leader.path, configuration: configuration, logger: .quiet),
         try Journal.open(directory: standby.path, configuration: configuration, logger: .quiet))
    }

    func files(_ directory: TemporaryDirectory) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path)
        where name.hasSuffix(".log") || name.hasSuffix(".index") {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: directory.file(name)))
        }
        return files
    }

    @Test func aCaughtUpStandbyHasByteIdenticalSegmentsAndIndexes() async throws {
        let (leaderDirectory, standbyDirectory) = (try TemporaryDirectory(), try TemporaryDirectory())
        defer { leaderDirectory.remove(); standbyDirectory.remove() }
        let (leader, standby) = try open(leaderDirectory, standbyDirectory)
        standby.setFollowing(true)
        // Catch-up from empty, in reads of various sizes (some smaller than one batch).
        try await appendRecords(leader, 0..<400, perAppend: 7)
        #expect(try segmentNames(leaderDirectory).count > 3, "the test needs several segments")
        try await copy(from: leader, to: standby, maxBytes: 100)
        try await appendRecords(leader, 400..<700, perAppend: 13)
        try await copy(from: leader, to: standby, maxBytes: 1 << 20)
        // Live follow: a few records at a time, as a response body brings them (the fetch
        // header before the batches: a buffer whose reader index is not 0).
        for n in 700..<760 {
            _ = try await leader.append(record(n))
            var raw = try leader.readRaw(from: standby.nextOffset, maxBytes: 1 << 20)
            var body = ByteBuffer(repeating: 0xEE, count: 56)
            body.writeImmutableBuffer(raw.bytes)
            body.moveReaderIndex(forwardBy: 56)
            raw.bytes = body
            #expect(try await standby.appendReplicated(raw) == leader.committedOffset)
        }
        #expect(standby.committedOffset == leader.committedOffset)
        #expect(try readAll(standby).map { string($0.payload) } == (0..<760).map { string(record($0)) })
        await leader.close()
        await standby.close()
        let leaderFiles = try files(leaderDirectory)
        #expect(leaderFiles.count > 6)
        #expect(try files(standbyDirectory) == leaderFiles)
        // The standby's copy opens as a journal of its own and goes on following.
        let reopened = try Journal.open(directory: standbyDirectory.path, configuration: configuration, logger: .quiet)
        #expect(reopened.nextOffset == Offset(760))
        #expect(reopened.recovery.truncation == nil)
        #expect(reopened.recovery.rebuiltIndexes.isEmpty)
        await reopened.close()
    }

    /// What a backup keeps of a fetch answer: whole batches that begin below its target.
    @Test func batchesBeginningBeforeAnOffsetAreKeptWholeAndAppendable() async throws {
        let (leaderDirectory, standbyDirectory) = (try TemporaryDirectory(), try TemporaryDirectory())
        defer { leaderDirectory.remove(); standbyDirectory.remove() }
        let (leader, standby) = try open(leaderDirectory, standbyDirectory)
        try await appendRecords(leader, 0..<60, perAppend: 5)  // batches of 5 records: 0..<5, 5..<10, ...
        let all = try leader.readRaw(from: .zero, maxBytes: 1 << 20)
        #expect(all.nextOffset == Offset(60))
        #expect(all.beginning(before: Offset(100))?.bytes == all.bytes, "a target past the end keeps everything")
        #expect(all.beginning(before: .zero)?.isEmpty == true, "a target at the start keeps nothing")
        let boundary = try #require(all.beginning(before: Offset(10)))
        #expect(boundary.nextOffset == Offset(10), "at a batch boundary: exactly up to it")
        let inside = try #require(all.beginning(before: Offset(12)))
        #expect(inside.nextOffset == Offset(15), "inside a batch: that batch whole")
        #expect(inside.lastHeader?.nextOffset == Offset(15))
        var cut = all
        cut.bytes.moveWriterIndex(to: cut.bytes.readerIndex + 30)
        #expect(cut.beginning(before: Offset(60)) == nil, "bytes that stop inside a batch are not batches")
        standby.setFollowing(true)
        #expect(try await standby.appendReplicated(inside) == Offset(15))
        await leader.close()
        await standby.close()
    }

    @Test func invalidOrMisplacedBatchesAreRefusedAndNothingIsWritten() async throws {
        let (leaderDirectory, standbyDirectory) = (try TemporaryDirectory(), try TemporaryDirectory())
        defer { leaderDirectory.remove(); standbyDirectory.remove() }
        let (leader, standby) = try open(leaderDirectory, standbyDirectory)
        try await appendRecords(leader, 0..<60, perAppend: 5)
        let first = try leader.readRaw(from: .zero, maxBytes: 1 << 20)
        // Not following: refused; local appends to a following journal: refused.
        await #expect(throws: JournalError.self) { try await standby.appendReplicated(first) }
        standby.setFollowing(true)
        await #expect(throws: JournalError.self) { try await standby.append(record(0)) }
        #expect(throws: JournalError.self) { try standby.submit([record(0)]) }

        func refused(_ raw: RawBatches, _ what: Comment) async {
            await #expect(throws: JournalError.self, what) { try await standby.appendReplicated(raw) }
            #expect(standby.nextOffset == .zero, what)
            #expect(standby.committedOffset == .zero, what)
        }
        // One flipped bit anywhere in the first batch (header or payload) is caught.
        let firstBatchBytes = try #require(first.bytes.getSlice(at: first.bytes.readerIndex, length: BatchHeader.size))
        let firstHeader = try BatchHeader.peek(from: firstBatchBytes).get()
        for position in [0, 5, 9, 14, 20, 30, 45, 60, firstHeader.totalBytes - 1] {
            var flipped = first
            let byte = try #require(flipped.bytes.getInteger(at: flipped.bytes.readerIndex + position, as: UInt8.self))
            flipped.bytes.setInteger(byte ^ 0x10, at: flipped.bytes.readerIndex + position)
            await refused(flipped, "bit flipped at byte \(position)")
        }
        // Truncated: a header cut short, a payload cut short.
        var truncated = first
        truncated.bytes.moveWriterIndex(to: truncated.bytes.readerIndex + 30)
        await refused(truncated, "truncated header")
        truncated = first
        truncated.bytes.moveWriterIndex(to: truncated.bytes.readerIndex + firstHeader.totalBytes - 3)
        await refused(truncated, "truncated payload")
        // A gap: batches that start after this journal's end.
        let later = try leader.readRaw(from: firstHeader.nextOffset, maxBytes: 1 << 20)
        await refused(later, "a gap")
        // The leader's claimed end does not match its bytes.
        var lying = first
        lying.nextOffset = first.nextOffset.advanced(by: 1)
        await refused(lying, "a claimed end past the bytes")
        // A segment start that is not where the batches start.
        var moved = first
        moved.segmentBase = Offset(3)
        await refused(moved, "a segment that starts inside the batches")
        // The good copy is taken, then an overlap (the same batches again) is refused.
        #expect(try await standby.appendReplicated(first) == first.nextOffset)
        await #expect(throws: JournalError.self) { try await standby.appendReplicated(first) }
        #expect(standby.nextOffset == first.nextOffset)
        await leader.close()
        await standby.close()
    }

    @Test func bytesAfterAnOffsetAreCountedWithinOneIndexInterval() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        try await appendRecords(journal, 0..<400, perAppend: 7)
        let total = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".log") }
            .reduce(Int64(0)) { $0 + ((try FileManager.default.attributesOfItem(atPath: directory.file($1))[.size] as? NSNumber)?.int64Value ?? 0) }
        #expect(journal.bytes(after: .zero) == total)
        #expect(journal.bytes(after: journal.committedOffset) == 0)
        // Every batch, one read each: where it starts and its size; the exact bytes after a
        // batch start are the sum of the sizes from there on.
        var batches: [(Offset, Int64)] = []
        var next = Offset.zero
        while next < journal.committedOffset {
            let one = try journal.readRaw(from: next, maxBytes: 1)
            batches.append((next, Int64(one.bytes.readableBytes)))
            next = one.nextOffset
        }
        #expect(batches.count > 20)
        for index in stride(from: 0, to: batches.count, by: 5) {
            let exact = batches[index...].reduce(Int64(0)) { $0 + $1.1 }
            let counted = journal.bytes(after: batches[index].0)
            #expect(counted >= exact && counted - exact < Int64(smallConfiguration().indexIntervalBytes) + 4096,
                    "batch at \(batches[index].0): counted \(counted), exact \(exact)")
        }
        await journal.close()
    }

    @Test func aLeaderReadsOnlyFromBatchBoundariesAndWithinItsRange() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(), logger: .quiet)
        try await appendRecords(journal, 0..<40, perAppend: 10)
        _ = try await journal.append(record(40))
        let raw = try journal.readRaw(from: .zero, maxBytes: 1)  // at least one batch
        #expect(!raw.isEmpty && raw.segmentBase == .zero)
        let header = try BatchHeader.peek(from: try #require(raw.bytes.getSlice(at: raw.bytes.readerIndex, length: BatchHeader.size))).get()
        #expect(raw.nextOffset == header.nextOffset)
        #expect(raw.bytes.readableBytes == header.totalBytes)
        #expect(header.recordCount > 1, "the test needs a batch of several records")
        #expect(throws: JournalError.self) { try journal.readRaw(from: Offset(1), maxBytes: 1 << 20) }
        #expect(throws: JournalError.self) { try journal.readRaw(from: Offset(42), maxBytes: 1 << 20) }
        let end = try journal.readRaw(from: Offset(41), maxBytes: 1 << 20)
        #expect(end.isEmpty && end.bytes.readableBytes == 0)
        await journal.close()
    }

    // MARK: Leader epochs and divergence

    @Test func leaderEpochsRecordWhereEachEpochBeganAndWhereANodesLastEpochEnds() {
        var epochs = LeaderEpochs()
        #expect(epochs.current == 0 && epochs.end(of: 0) == nil)
        var recorded = epochs.record(1, from: Offset(100))
        #expect(recorded)
        recorded = epochs.record(1, from: Offset(150))
        #expect(!recorded, "not newer")
        recorded = epochs.record(3, from: Offset(200))
        #expect(recorded)
        #expect(epochs.end(of: 0) == Offset(100))
        #expect(epochs.end(of: 1) == Offset(200))
        #expect(epochs.end(of: 2) == Offset(200), "an epoch this history never saw ends where the next one it knows begins")
        #expect(epochs.end(of: 3) == nil && epochs.end(of: 4) == nil)
        // An epoch that wrote nothing gives way to the next at the same start.
        recorded = epochs.record(4, from: Offset(200))
        #expect(recorded)
        #expect(epochs.entries.map(\.epoch) == [0, 1, 4])
        epochs.truncate(to: Offset(150))
        #expect(epochs.entries == [.init(epoch: 0, start: .zero), .init(epoch: 1, start: Offset(100))])
    }

    @Test func localAppendsCarryTheNewestEpochAndCopiesKeepTheirs() async throws {
        let (leaderDirectory, standbyDirectory) = (try TemporaryDirectory(), try TemporaryDirectory())
        defer { leaderDirectory.remove(); standbyDirectory.remove() }
        let (leader, standby) = try open(leaderDirectory, standbyDirectory)
        standby.setFollowing(true)
        try await appendRecords(leader, 0..<30, perAppend: 10)
        try leader.beginEpoch(2)
        #expect(throws: JournalError.self) { try leader.beginEpoch(2) }
        try await appendRecords(leader, 30..<50, perAppend: 10)
        #expect(try leader.lastBatchHeader()?.leaderEpoch == 2)
        #expect(leader.leaderEpochs.entries.last == .init(epoch: 2, start: Offset(30)))
        try await copy(from: leader, to: standby, maxBytes: 1 << 20)
        // The standby learnt the epoch from the batches, at the same start.
        #expect(standby.leaderEpochs == leader.leaderEpochs)
        #expect(try standby.lastBatchHeader()?.leaderEpoch == 2)
        await leader.close()
        await standby.close()
        let reopened = try Journal.open(directory: standbyDirectory.path, configuration: configuration, logger: .quiet)
        #expect(reopened.leaderEpochs.entries.map(\.epoch) == [0, 2])
        await reopened.close()
    }

    @Test func aDivergentTailIsCutAtABatchBoundaryAndKept() async throws {
        let (leaderDirectory, standbyDirectory) = (try TemporaryDirectory(), try TemporaryDirectory())
        defer { leaderDirectory.remove(); standbyDirectory.remove() }
        var (leader, standby) = try open(leaderDirectory, standbyDirectory)
        standby.setFollowing(true)
        try await appendRecords(leader, 0..<200, perAppend: 9)
        try await copy(from: leader, to: standby, maxBytes: 1 << 20)
        let agreed = leader.committedOffset
        // The old leader writes on (several segments) while the standby is promoted.
        try await appendRecords(leader, 200..<500, perAppend: 9)
        #expect(try segmentNames(leaderDirectory).count >= 3)
        standby.setFollowing(false)
        try standby.beginEpoch(1)
        let end = leader.committedOffset
        await leader.close()
        // Where the old leader's epoch 0 ends in the new leader's history: where epoch 1 began.
        let reopened = try Journal.open(directory: leaderDirectory.path, configuration: configuration, logger: .quiet)
        let oldEpoch = try reopened.lastBatchHeader()?.leaderEpoch ?? 0
        await reopened.close()
        #expect(oldEpoch == 0)
        #expect(standby.leaderEpochs.end(of: oldEpoch) == agreed)
        #expect(throws: JournalError.self) { try Journal.truncate(directory: leaderDirectory.path, to: Offset(agreed.value + 1), logger: .quiet) }
        let cut = try #require(try Journal.truncate(directory: leaderDirectory.path, to: agreed, logger: .quiet))
        #expect(cut.from == agreed)
        #expect(cut.to == end)
        #expect(cut.bytes > 0)
        #expect(!cut.brokenCopies.isEmpty)
        #expect(try Journal.truncate(directory: leaderDirectory.path, to: agreed, logger: .quiet) == nil, "nothing more to cut")
        // The cut journal opens at the agreed end with its first records intact, and follows
        // the new leader from there.
        leader = try Journal.open(directory: leaderDirectory.path, configuration: configuration, logger: .quiet)
        #expect(leader.nextOffset == agreed)
        #expect(try readAll(leader).map { string($0.payload) } == (0..<200).map { string(record($0)) })
        leader.setFollowing(true)
        try await appendRecords(standby, 1000..<1010, perAppend: 5)
        try await copy(from: standby, to: leader, maxBytes: 1 << 20)
        #expect(leader.leaderEpochs == standby.leaderEpochs)
        await leader.close()
        await standby.close()
        #expect(try files(leaderDirectory) == files(standbyDirectory))
    }
}
