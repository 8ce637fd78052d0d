#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import NIOCore
import Synchronization

/// Whole committed batches of one segment, byte for byte as they are on disk: what a leader
/// sends a standby, and what the standby appends.
public struct RawBatches: Sendable {
    /// The base offset of the segment holding the batches: a standby whose active segment
    /// starts elsewhere starts a new segment here, so both journals cut segments alike.
    public var segmentBase: Offset
    /// The base offset of the first batch (the offset asked for).
    public var firstOffset: Offset
    /// The offset after the last batch; `firstOffset` when there are none.
    public var nextOffset: Offset
    /// The batches back to back, headers included.
    public var bytes: ByteBuffer

    public init(segmentBase: Offset, firstOffset: Offset, nextOffset: Offset, bytes: ByteBuffer) {
        self.segmentBase = segmentBase
        self.firstOffset = firstOffset
        self.nextOffset = nextOffset
        self.bytes = bytes
    }

    public var isEmpty: Bool { firstOffset == nextOffset }

    /// The header of the last batch, found by walking the headers (nil when there are none or
    /// the bytes do not hold whole batches; `Journal.appendReplicated` checks them fully).
    public var lastHeader: BatchHeader? {
        var cursor = bytes.readerIndex
        var last: BatchHeader?
        while cursor < bytes.writerIndex, let slice = bytes.getSlice(at: cursor, length: BatchHeader.size),
              case .success(let header) = BatchHeader.peek(from: slice) {
            last = header
            cursor += header.totalBytes
        }
        return cursor == bytes.writerIndex ? last : nil
    }

    /// The batches that begin below `end`, the rest left off (a batch is never split, so the
    /// result may end past `end`, inside the last batch kept). Nil when a batch header cannot
    /// be read where one should start.
    public func beginning(before end: Offset) -> RawBatches? {
        var cursor = bytes.readerIndex
        var next = firstOffset
        while cursor < bytes.writerIndex, next < end {
            guard let slice = bytes.getSlice(at: cursor, length: BatchHeader.size),
                  case .success(let header) = BatchHeader.peek(from: slice),
                  cursor + header.totalBytes <= bytes.writerIndex else { return nil }
            cursor += header.totalBytes
            next = header.nextOffset
        }
        guard let kept = bytes.getSlice(at: bytes.readerIndex, length: cursor - bytes.readerIndex) else { return nil }
        return RawBatches(segmentBase: segmentBase, firstOffset: firstOffset, nextOffset: next, bytes: kept)
    }
}

/// Buffers the checks of copied batches decompress into, kept between checks.
private let decodeArenas = Mutex<[ByteBuffer]>([])

/// A standby's copied batches, checked and waiting for the writer.
struct ReplicatedGroup: Sendable {
    var group: EncodedGroup
}

extension Journal {
    // MARK: The leader's side

    /// Reads whole committed batches from `offset`, which must be where a batch starts, as
    /// they are on disk: at least one batch when `offset` is below the committed offset, then
    /// more while they fit `maxBytes`, never past the end of the segment holding `offset`.
    /// Every batch's CRC-32C is checked on the way (a leader never sends what it cannot read).
    /// - Throws: `.offsetOutOfRange` below the earliest retained offset or past the committed
    ///   one; `.notBatchBoundary` when `offset` is inside a batch (the standby's journal is
    ///   not a copy of this one); `.corrupt`; `.io`.
    public func readRaw(from offset: Offset, maxBytes: Int) throws(JournalError) -> RawBatches {
        guard let (file, start, size, base) = try locate(offset) else {
            let active = state.withLock { $0.segments.last?.baseOffset ?? offset }
            return RawBatches(segmentBase: active, firstOffset: offset, nextOffset: offset, bytes: ByteBuffer())
        }
        var scanner = SegmentScanner(file: file, from: start.position, to: FilePosition(size),
                                     expectedOffset: start.offset, readAheadBytes: max(64 << 10, min(maxBytes, 8 << 20)))
        var bytes = ByteBufferAllocator().buffer(capacity: min(maxBytes, Int(size - start.position.value)))
        var next = offset
        while let (header, _, batch) = try scanner.nextBatch() {
            guard header.nextOffset > offset else { continue }
            guard header.baseOffset == next else {
                throw .notBatchBoundary(requested: offset, batchBase: header.baseOffset)
            }
            if next != offset && bytes.readableBytes + header.totalBytes > maxBytes { break }
            bytes.writeImmutableBuffer(batch)
            next = header.nextOffset
        }
        return RawBatches(segmentBase: base, firstOffset: offset, nextOffset: next, bytes: bytes)
    }

    /// About how many bytes of committed batches follow `offset` (within one index interval,
    /// `indexIntervalBytes`, of the exact figure): a standby's lag in bytes.
    /// The journal's size on disk: its segments' bytes (indexes aside) and how many there are,
    /// the active one included. For metrics and status; O(segments).
    public var storage: (bytes: Int64, segments: Int) {
        state.withLock { state in (state.segments.reduce(0) { $0 + $1.sizeBytes }, state.segments.count) }
    }

    public func bytes(after offset: Offset) -> Int64 {
        state.withLock { state in
            var total: Int64 = 0
            for segment in state.segments.reversed() {
                if segment.baseOffset >= offset {
                    total += segment.sizeBytes
                    continue
                }
                if offset < segment.nextOffset {
                    total += segment.sizeBytes - segment.locate(offset).position.value
                }
                break
            }
            return total
        }
    }

    // MARK: Leader epochs

    /// Where each leader epoch began (FORMAT.md §5).
    public var leaderEpochs: LeaderEpochs { state.withLock { $0.epochs } }

    /// Starts leader epoch `epoch` at the journal's end (promotion), durably: local appends
    /// from now on carry it.
    /// - Throws: `.replicaMismatch` when `epoch` is not newer than the current one; `.io`.
    public func beginEpoch(_ epoch: UInt32) throws(JournalError) {
        var epochs = leaderEpochs
        guard epochs.record(epoch, from: nextOffset) else {
            throw .replicaMismatch("leader epoch \(epoch) is not newer than this journal's \(epochs.current)")
        }
        try epochs.save(directory: directory)
        state.withLock { $0.epochs = epochs }
        logger.notice("leader epoch begun", metadata: ["journal.leader_epoch": "\(epoch)", "journal.offset": "\(nextOffset)"])
    }

    /// A standby saw its leader at `epoch` (a fetch answer's header): the highest such epoch
    /// is kept in `leader-epoch-seen` (FORMAT.md §5), so that a promotion picks a newer one
    /// even when the leader's epoch has written nothing this journal holds.
    public func noteSeenEpoch(_ epoch: UInt32) throws(JournalError) {
        guard epoch > seenEpoch else { return }
        try FileSystem.writeAtomically(ByteBuffer(string: "\(epoch)\n"), to: JournalFiles.join(directory, Self.seenEpochFile),
                                       directory: directory)
        state.withLock { $0.seenEpoch = max($0.seenEpoch, epoch) }
    }

    /// The highest leader epoch this journal's node has seen its leader at (0: none).
    public var seenEpoch: UInt32 { state.withLock { $0.seenEpoch } }

    static let seenEpochFile = "leader-epoch-seen"

    /// The newest leader epoch a journal directory knows, its own or one its node saw a leader
    /// at, read without opening the journal (nor taking its lock): what a cluster campaign's
    /// epoch must exceed. 0 for a directory without either file.
    public static func newestEpoch(directory: String) throws(JournalError) -> UInt32 {
        max(try LeaderEpochs.load(directory: directory).current, try loadSeenEpoch(directory: directory))
    }

    static func loadSeenEpoch(directory: String) throws(JournalError) -> UInt32 {
        let path = JournalFiles.join(directory, seenEpochFile)
        guard FileSystem.exists(path) else { return 0 }
        var bytes = try FileSystem.readAll(path)
        guard let epoch = UInt32((bytes.readString(length: bytes.readableBytes) ?? "").trimmingWhitespace()) else {
            throw .unsupportedJournal(directory: directory, reason: "\(seenEpochFile) does not hold one decimal epoch")
        }
        return epoch
    }

    /// The header of the newest committed batch (nil for an empty journal): its epoch and CRC
    /// identify it when a standby asks its leader whether they agree up to its end.
    public func lastBatchHeader() throws(JournalError) -> BatchHeader? {
        let end = committedOffset
        guard end > earliestOffset else { return nil }
        var reader = makeReader()
        return try reader.read(from: Offset(end.value - 1), maxBytes: 1).last?.header
    }

    /// The header of the committed batch that ends exactly at `end`, or nil when no batch does
    /// (or it is not retained).
    public func batchHeader(endingAt end: Offset) throws(JournalError) -> BatchHeader? {
        guard end > earliestOffset, end <= committedOffset else { return nil }
        var reader = makeReader()
        guard let header = try reader.read(from: Offset(end.value - 1), maxBytes: 1).first?.header,
              header.nextOffset == end else { return nil }
        return header
    }

    // MARK: The standby's side

    /// Makes the journal a standby's copy of a leader's: local appends are refused and
    /// `appendReplicated` takes batches; or, with false, the journal takes appends again
    /// (promotion).
    public func setFollowing(_ following: Bool) {
        state.withLock { $0.following = following }
    }

    /// Whether the journal takes batches copied from a leader rather than local appends.
    public var isFollowing: Bool { state.withLock { $0.following } }

    /// Appends batches copied from a leader, byte for byte, and returns once they are
    /// committed (durable with the default durability; readers and tails see them then).
    ///
    /// Every batch is checked before anything is written: its header, its CRC-32C, that its
    /// records decompress and frame exactly, and that offsets chain from this journal's end.
    /// A batch set from a segment that starts after this journal's active one starts a new
    /// segment at the same offset, so a caught-up standby's segment files are identical to
    /// the leader's.
    /// - Throws: `.replicaMismatch` (nothing written) for bytes that are not valid batches,
    ///   that do not start at this journal's end, or whose segment does not fit;
    ///   `.notFollowing`; `.writerFailed`; `.closed`.
    public func appendReplicated(_ raw: RawBatches) async throws -> Offset {
        if raw.isEmpty { return raw.nextOffset }
        let (group, batchEpochs) = try Self.checkReplicated(raw)
        // The epochs the batches begin are recorded before the batches are written, so the
        // file never lags the data. Only this task appends to a following journal.
        // The data decides: an epoch recorded at or after a batch's start that the batch does
        // not carry (this node was promoted, wrote nothing, and follows again) is dropped.
        let known = leaderEpochs
        var epochs = known
        for entry in batchEpochs {
            epochs.truncate(to: entry.start)
            guard entry.epoch >= epochs.current else {
                throw JournalError.replicaMismatch("the batch at offset \(entry.start) has leader epoch \(entry.epoch), older than this journal's \(epochs.current) before it")
            }
            epochs.record(entry.epoch, from: entry.start)
        }
        if epochs != known {
            try epochs.save(directory: directory)
            state.withLock { $0.epochs = epochs }
        }
        return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<OffsetRange, Error>) in
            let outcome: Result<Bool, JournalError> = state.withLock { state in
                switch state.lifecycle {
                case .open: break
                case .closing, .closed: return .failure(.closed)
                case .failed(let reason): return .failure(.writerFailed(reason))
                }
                guard state.following else { return .failure(.notFollowing) }
                guard raw.firstOffset == state.nextOffset else {
                    return .failure(.replicaMismatch("the batches start at offset \(raw.firstOffset), this journal ends at \(state.nextOffset)"))
                }
                let activeBase = state.replicatedSegmentBase ?? state.segments.last?.baseOffset ?? .zero
                var group = group
                if raw.segmentBase != activeBase {
                    guard raw.segmentBase == raw.firstOffset, raw.segmentBase > activeBase else {
                        return .failure(.replicaMismatch("the leader's segment starts at \(raw.segmentBase), this journal's active segment at \(activeBase)"))
                    }
                    group.segmentStart = raw.segmentBase
                    state.replicatedSegmentBase = raw.segmentBase
                }
                state.replicated.append(ReplicatedGroup(group: group))
                state.nextOffset = raw.nextOffset
                state.appendWaiters.append(AppendWaiter(continuation: continuation,
                                                        range: OffsetRange(first: raw.firstOffset, last: raw.nextOffset.predecessor)))
                return .success(state.takeEncoderSleeping())
            }
            switch outcome {
            case .success(let wakeEncoder):
                if wakeEncoder { encoderWakeup.signal() }
            case .failure(let error):
                continuation.resume(throwing: error)
            }
        }.last.advanced(by: 1)
    }

    /// Checks copied batches as recovery checks a segment, and lists them for the writer.
    static func checkReplicated(_ raw: RawBatches) throws(JournalError) -> (group: EncodedGroup, epochs: [LeaderEpochs.Entry]) {
        // The writer reads a group's bytes from index 0 (a response body arrives with its
        // header before the batches).
        var group = EncodedGroup(bytes: raw.bytes.slice())
        group.replicated = true
        let bytes = group.bytes
        var cursor = 0
        var expected = raw.firstOffset
        var epochs: [LeaderEpochs.Entry] = []
        func fail(_ kind: CorruptionKind, at position: Int, offset: Offset) -> JournalError {
            .replicaMismatch("batch at byte \(position) of the leader's response (offset \(offset)): \(kind)")
        }
        // The walk: headers, lengths, offsets chaining, epochs not going back.
        while cursor < bytes.readableBytes {
            let available = bytes.readableBytes - cursor
            guard available >= BatchHeader.size, let headerBytes = bytes.getSlice(at: cursor, length: BatchHeader.size) else {
                throw fail(.truncatedHeader(availableBytes: available), at: cursor, offset: expected)
            }
            let header: BatchHeader
            switch BatchHeader.peek(from: headerBytes) {
            case .success(let parsed): header = parsed
            case .failure(let kind): throw fail(kind, at: cursor, offset: expected)
            }
            guard header.totalBytes <= available else {
                throw fail(.truncatedPayload(expectedBytes: Int(header.payloadLength), availableBytes: available - BatchHeader.size),
                           at: cursor, offset: expected)
            }
            guard header.baseOffset == expected else {
                throw fail(.offsetGap(expected: expected, found: header.baseOffset), at: cursor, offset: expected)
            }
            if let last = epochs.last, header.leaderEpoch < last.epoch {
                throw .replicaMismatch("the batch at offset \(expected) has leader epoch \(header.leaderEpoch), after one of epoch \(last.epoch)")
            }
            if header.leaderEpoch != epochs.last?.epoch { epochs.append(.init(epoch: header.leaderEpoch, start: expected)) }
            group.batches.append((header, cursor))
            expected = header.nextOffset
            cursor += header.totalBytes
        }
        guard expected == raw.nextOffset else {
            throw .replicaMismatch("the batches end at offset \(expected), the leader said \(raw.nextOffset)")
        }
        // Each batch's CRC, and its records decompressed and framed, on every core: this is
        // most of a catch-up's work on the standby.
        let batches = group.batches
        let problems = Mutex<[Int: CorruptionKind]>([:])
        DispatchQueue.concurrentPerform(iterations: batches.count) { index in
            let (header, start) = batches[index]
            guard let batch = bytes.getSlice(at: start, length: header.totalBytes) else {
                preconditionFailure("the walk checked that batch \(index) lies within the bytes")
            }
            let computed = BatchCodecIO.checksum(ofBatchIn: batch, header: header)
            var problem: CorruptionKind?
            if computed != header.crc {
                problem = .checksumMismatch(stored: header.crc, computed: computed)
            } else {
                // Arenas are reused from one check to the next: fresh large buffers cost page
                // faults and zeroing, a fifth of a catch-up's time.
                var arena = decodeArenas.withLock { $0.popLast() } ?? ByteBuffer()
                arena.clear()
                if case .failure(let kind) = BatchCodecIO.appendRecords(ofBatchIn: batch, header: header, to: &arena) {
                    problem = kind
                }
                let kept = arena
                decodeArenas.withLock { if $0.count < 8 { $0.append(kept) } }
            }
            if let problem { problems.withLock { $0[index] = problem } }
        }
        if let (index, kind) = problems.withLock({ $0.min { $0.key < $1.key } }) {
            throw fail(kind, at: batches[index].start, offset: batches[index].header.baseOffset)
        }
        return (group, epochs)
    }
}
