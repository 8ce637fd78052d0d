import NIOCore

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
}

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
        let group = try Self.checkReplicated(raw)
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
    static func checkReplicated(_ raw: RawBatches) throws(JournalError) -> EncodedGroup {
        // The writer reads a group's bytes from index 0 (a response body arrives with its
        // header before the batches).
        var group = EncodedGroup(bytes: raw.bytes.slice())
        group.replicated = true
        var arena = ByteBuffer()
        var cursor = raw.bytes.readerIndex
        var expected = raw.firstOffset
        func fail(_ kind: CorruptionKind) -> JournalError {
            .replicaMismatch("batch at byte \(cursor - raw.bytes.readerIndex) of the leader's response (offset \(expected)): \(kind)")
        }
        while cursor < raw.bytes.writerIndex {
            let available = raw.bytes.writerIndex - cursor
            guard available >= BatchHeader.size, let headerBytes = raw.bytes.getSlice(at: cursor, length: BatchHeader.size) else {
                throw fail(.truncatedHeader(availableBytes: available))
            }
            let header: BatchHeader
            switch BatchHeader.peek(from: headerBytes) {
            case .success(let parsed): header = parsed
            case .failure(let kind): throw fail(kind)
            }
            guard header.totalBytes <= available, let batch = raw.bytes.getSlice(at: cursor, length: header.totalBytes) else {
                throw fail(.truncatedPayload(expectedBytes: Int(header.payloadLength), availableBytes: available - BatchHeader.size))
            }
            let computed = BatchCodecIO.checksum(ofBatchIn: batch, header: header)
            guard computed == header.crc else { throw fail(.checksumMismatch(stored: header.crc, computed: computed)) }
            guard header.baseOffset == expected else { throw fail(.offsetGap(expected: expected, found: header.baseOffset)) }
            arena.clear()
            if case .failure(let kind) = BatchCodecIO.appendRecords(ofBatchIn: batch, header: header, to: &arena) {
                throw fail(kind)
            }
            group.batches.append((header, cursor - raw.bytes.readerIndex))
            expected = header.nextOffset
            cursor += header.totalBytes
        }
        guard expected == raw.nextOffset else {
            throw .replicaMismatch("the batches end at offset \(expected), the leader said \(raw.nextOffset)")
        }
        return group
    }
}
