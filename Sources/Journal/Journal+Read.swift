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
        var reader = makeReader()
        return try reader.read(from: offset, maxBytes: maxBytes)
    }

    /// A reader that keeps its buffers between reads; see `JournalReader`.
    public func makeReader() -> JournalReader {
        JournalReader(journal: self)
    }

    /// Where the batch holding `offset` can be found, or nil when `offset` is the committed end.
    func locate(_ offset: Offset) throws(JournalError) -> (file: FileHandle, start: IndexEntry, size: Int64, base: Offset)? {
        try state.withLock { state throws(JournalError) in
            let earliest = state.segments.first?.baseOffset ?? state.committedNext
            guard offset >= earliest, offset <= state.committedNext else {
                throw .offsetOutOfRange(requested: offset, earliest: earliest, next: state.committedNext)
            }
            if offset == state.committedNext { return nil }
            guard let segment = state.segments.last(where: { $0.baseOffset <= offset }) else {
                preconditionFailure("offset \(offset) is retained, so a segment starts at or before it")
            }
            return (segment.file, segment.locate(offset), segment.sizeBytes, segment.baseOffset)
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
    /// - Throws: `JournalError.writerFailed` after a storage failure, `CancellationError`.
    public func waitForCommit(of offset: Offset) async throws -> Bool {
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

/// Reads committed batches, reusing its file window and decompression buffer from one read to
/// the next: once the batches of a read are dropped, the next read allocates nothing. For a
/// replay or a tail that reads the whole journal.
///
/// Not thread-safe; a value owned by one task. Many readers may read one journal at once.
public struct JournalReader: Sendable {
    let journal: Journal
    private var window = ByteBuffer()
    private var arena = ByteBuffer()

    init(journal: Journal) {
        self.journal = journal
    }

    /// See `Journal.read(from:maxBytes:)`.
    public mutating func read(from offset: Offset, maxBytes: Int = 1 << 20) throws(JournalError) -> [RecordBatch] {
        guard let (file, start, size, _) = try journal.locate(offset) else { return [] }
        var scanner = SegmentScanner(file: file, from: start.position, to: FilePosition(size),
                                     expectedOffset: start.offset,
                                     readAheadBytes: max(64 << 10, min(maxBytes, 8 << 20)), window: window)
        window = ByteBuffer()  // the scanner owns it now, so compaction happens in place
        defer { window = scanner.window }
        arena.clear()
        // Decode everything first and slice the arena only at the end: a slice taken earlier
        // would make each later write copy the arena.
        var decoded: [(header: BatchHeader, position: FilePosition, start: Int)] = []
        var total = 0
        while let (header, position, bytes) = try scanner.nextBatch() {
            guard header.nextOffset > offset else { continue }
            if !decoded.isEmpty && total + header.totalBytes > maxBytes { break }
            switch BatchCodecIO.appendRecords(ofBatchIn: bytes, header: header, to: &arena) {
            case .success(let start):
                decoded.append((header, position, start))
                total += header.totalBytes
            case .failure(let kind):
                throw .corrupt(CorruptionReport(file: file.path, position: position,
                                                expectedOffset: header.baseOffset, kind: kind))
            }
        }
        return decoded.map { batch in
            guard let framed = arena.getSlice(at: batch.start, length: Int(batch.header.uncompressedLength)) else {
                preconditionFailure("batch records at \(batch.start) were written to the arena")
            }
            return RecordBatch(header: batch.header, position: batch.position, framedRecords: framed)
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
        Iterator(journal: journal, reader: journal.makeReader(), nextOffset: start, readBytesMax: readBytesMax)
    }

    /// Not thread-safe; owned by the task iterating.
    public struct Iterator: AsyncIteratorProtocol {
        let journal: Journal
        var reader: JournalReader
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
                batches = []  // drop the previous read's buffers so the reader can reuse them
                batches = try reader.read(from: nextOffset, maxBytes: readBytesMax)
                batchIndex = 0
                if batches.isEmpty {
                    guard try await journal.waitForCommit(of: nextOffset) else { return nil }
                }
            }
        }
    }
}
