import NIOCore

extension Journal {
    /// Reads committed batches starting with the one that holds `offset`.
    ///
    /// Returns whole batches, so the first may start before `offset` (use `records(from:)` or
    /// skip them). Returns at least one batch when `offset` is below the committed offset, then
    /// more while their total size stays within `maxBytes`, never past the end of the segment
    /// holding `offset` and never past the committed offset. Returns no batch when `offset` is
    /// the committed offset (nothing new yet). Every batch's CRC-32C is checked.
    /// - Throws: `JournalError.offsetOutOfRange` below the earliest retained offset or past the
    ///   committed one; `.corrupt` naming file, position and offset; `.io`.
    public func read(from offset: Offset, maxBytes: Int = 1 << 20) throws(JournalError) -> [RecordBatch] {
        let located: (FileHandle, IndexEntry, Int64)? = try state.withLock { state throws(JournalError) in
            let earliest = state.segments.first?.baseOffset ?? state.committedNext
            guard offset >= earliest, offset <= state.committedNext else {
                throw .offsetOutOfRange(requested: offset, earliest: earliest, next: state.committedNext)
            }
            if offset == state.committedNext { return nil }
            guard let segment = state.segments.last(where: { $0.baseOffset <= offset }) else {
                preconditionFailure("offset \(offset) is retained, so a segment starts at or before it")
            }
            return (segment.file, segment.index.lookup(offset), segment.sizeBytes)
        }
        guard let (file, start, size) = located else { return [] }
        var scanner = SegmentScanner(file: file, from: start.position, to: FilePosition(size),
                                     expectedOffset: start.offset,
                                     readAheadBytes: max(64 << 10, min(maxBytes, 8 << 20)))
        var batches: [RecordBatch] = []
        var total = 0
        while true {
            switch try scanner.next() {
            case .end:
                return batches
            case .corrupt(let position, let kind):
                throw .corrupt(CorruptionReport(file: file.path, position: position,
                                                expectedOffset: scanner.expectedOffset, kind: kind))
            case .batch(let header, let position, let bytes):
                guard header.nextOffset > offset else { continue }
                if !batches.isEmpty && total + header.totalBytes > maxBytes { return batches }
                switch BatchCodecIO.decodeRecords(ofBatchIn: bytes, header: header) {
                case .success(let framed):
                    batches.append(RecordBatch(header: header, position: position, framedRecords: framed))
                    total += header.totalBytes
                case .failure(let kind):
                    throw .corrupt(CorruptionReport(file: file.path, position: position,
                                                    expectedOffset: header.baseOffset, kind: kind))
                }
            }
        }
    }

    /// Reads committed records from `offset` on, at most about `maxBytes` of batches.
    public func readRecords(from offset: Offset, maxBytes: Int = 1 << 20) throws(JournalError) -> [JournalRecord] {
        var records: [JournalRecord] = []
        for batch in try read(from: offset, maxBytes: maxBytes) {
            for record in batch.records where record.offset >= offset { records.append(record) }
        }
        return records
    }

    /// Every committed record from `offset` on, in order, then each new one as it commits.
    ///
    /// Never yields a record past the committed offset and never skips one. Holds at most one
    /// read of `readBytesMax` (at least one batch) in memory. Ends when the journal is closed
    /// and everything committed has been yielded.
    /// - Throws (from iteration): `JournalError.offsetOutOfRange` when `offset` is not
    ///   retained (or retention removed the records before the tail reached them),
    ///   `.writerFailed` once caught up after a storage failure, `.corrupt`, `CancellationError`.
    public func records(from offset: Offset, readBytesMax: Int = 1 << 20) -> JournalTail {
        JournalTail(journal: self, start: offset, readBytesMax: readBytesMax)
    }

    /// Waits until `offset` is committed or the journal stops.
    /// - Returns: false when the journal is closed and `offset` will never commit.
    func waitForCommit(of offset: Offset) async throws -> Bool {
        let id: UInt64 = state.withLock { state in
            defer { state.nextCommitWaiterID += 1 }
            return state.nextCommitWaiterID
        }
        while true {
            let settled: Bool? = try state.withLock { state throws(JournalError) in
                if state.committedNext > offset { return true }
                switch state.lifecycle {
                case .closed: return false
                case .failed(let reason): throw .writerFailed(reason)
                case .open, .closing: return nil
                }
            }
            if let settled { return settled }
            try Task.checkCancellation()
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow: Bool = state.withLock { state in
                        let running = switch state.lifecycle {
                        case .open, .closing: true
                        case .closed, .failed: false
                        }
                        if state.committedNext > offset || !running || Task.isCancelled { return true }
                        state.commitWaiters[id] = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                let waiter = state.withLock { $0.commitWaiters.removeValue(forKey: id) }
                waiter?.resume()
            }
        }
    }
}

/// The live tail of a journal: an `AsyncSequence` of records from an offset, continuing as new
/// batches commit. See `Journal.records(from:readBytesMax:)`.
public struct JournalTail: AsyncSequence, Sendable {
    public typealias Element = JournalRecord

    let journal: Journal
    let start: Offset
    let readBytesMax: Int

    public func makeAsyncIterator() -> Iterator {
        Iterator(journal: journal, nextOffset: start, readBytesMax: readBytesMax)
    }

    /// Not thread-safe; owned by the task iterating.
    public struct Iterator: AsyncIteratorProtocol {
        let journal: Journal
        /// The offset of the next record to yield.
        public private(set) var nextOffset: Offset
        let readBytesMax: Int
        var batches: [RecordBatch] = []
        var batchIndex = 0
        var current: RecordBatch.Records.Iterator?

        public mutating func next() async throws -> JournalRecord? {
            while true {
                if var records = current {
                    while let record = records.next() {
                        guard record.offset >= nextOffset else { continue }
                        precondition(record.offset == nextOffset, "tail expected offset \(nextOffset), read \(record.offset)")
                        current = records
                        nextOffset = nextOffset.advanced(by: 1)
                        return record
                    }
                    current = nil
                }
                if batchIndex < batches.count {
                    current = batches[batchIndex].records.makeIterator()
                    batchIndex += 1
                    continue
                }
                try Task.checkCancellation()
                batches = try journal.read(from: nextOffset, maxBytes: readBytesMax)
                batchIndex = 0
                if batches.isEmpty {
                    guard try await journal.waitForCommit(of: nextOffset) else { return nil }
                }
            }
        }
    }
}
