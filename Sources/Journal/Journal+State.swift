import NIOCore

/// Records admitted but not yet written, already cut into batches at the batch limits.
struct PendingBatch: Sendable {
    var framed: ByteBuffer
    var count: Int
    var baseOffset: Offset
    var firstTimestampMs: Int64
    var lastTimestampMs: Int64
}

/// An append waiting for its records to commit; nil `continuation` for a submission whose
/// caller learns of the commit another way (`Journal.submit`).
struct AppendWaiter: Sendable {
    let continuation: UnsafeContinuation<OffsetRange, Error>?
    let range: OffsetRange
    /// When it was queued: its append→commit latency is measured from here (`JournalMetrics`).
    var queued: ContinuousClock.Instant = .now
}

/// An append waiting for room in the pending queue, with its records.
struct BlockedAppend: Sendable {
    let records: [ByteBuffer]
    let bytes: Int
    let timestampMs: Int64
    let continuation: UnsafeContinuation<OffsetRange, Error>?
}

enum AdmitOutcome {
    /// Admitted or parked; the offsets the records take.
    case queued(OffsetRange, wakeEncoder: Bool)
    case refused(JournalError)
}

enum Lifecycle: Sendable {
    case open
    /// `close()` was called: the writer drains what is pending, then stops.
    case closing
    /// A write or fsync failed; nothing more is accepted (fail-stop).
    case failed(String)
    case closed
}

/// The journal's shared state, guarded by `Journal.state`. Methods are called with the lock
/// held and never block.
struct State: ~Copyable {
    var segments: [Segment]
    /// The offset the next admitted record gets.
    var nextOffset: Offset
    /// Offsets below this are committed.
    var committedNext: Offset
    var lifecycle: Lifecycle = .open
    var pending: [PendingBatch] = []
    var pendingBytes = 0
    var appendWaiters: [AppendWaiter] = []
    var blocked: [BlockedAppend] = []
    /// Records in `blocked`: they take the offsets after `nextOffset`, in order.
    var blockedRecords: UInt64 = 0
    /// Empty buffers from written batches, reused so steady appends allocate nothing.
    var spareBuffers: [ByteBuffer] = []
    var encoderSleeping = false
    var commitWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    var nextCommitWaiterID: UInt64 = 0
    var closeWaiters: [CheckedContinuation<Void, Never>] = []
    /// A standby's journal: batches copied from the leader (`replicated`), no local appends.
    var following = false
    /// Copied batches checked and waiting for the writer, in offset order.
    var replicated: [ReplicatedGroup] = []
    /// The base of the last segment a copied batch set started (the writer may not have
    /// rolled to it yet); nil when none did.
    var replicatedSegmentBase: Offset?
    /// Where each leader epoch began; local appends are written with the newest.
    var epochs: LeaderEpochs
    /// The highest epoch a standby saw its leader at (`leader-epoch-seen`).
    var seenEpoch: UInt32 = 0
    /// Retention keeps every segment holding an offset at or above this (`Retention.floor`).
    var retentionFloor: Offset?

    init(segments: [Segment], nextOffset: Offset, committedNext: Offset, epochs: LeaderEpochs) {
        self.segments = segments
        self.nextOffset = nextOffset
        self.committedNext = committedNext
        self.epochs = epochs
    }

    /// Whether the writer must be signalled; clears the flag so only one signal is sent.
    mutating func takeEncoderSleeping() -> Bool {
        defer { encoderSleeping = false }
        return encoderSleeping
    }

    mutating func takeCommitWaiters() -> [CheckedContinuation<Void, Never>] {
        defer { commitWaiters.removeAll(keepingCapacity: true) }
        return Array(commitWaiters.values)
    }

    /// Queues an append's records for the writer, or parks it until there is room. Either
    /// way its offsets are fixed now: the run after everything admitted or parked before it.
    mutating func admit(
        _ records: UnsafeBufferPointer<ByteBuffer>,
        bytes: Int,
        timestampMs: Int64,
        continuation: UnsafeContinuation<OffsetRange, Error>?,
        configuration: JournalConfiguration
    ) -> AdmitOutcome {
        switch lifecycle {
        case .open: break
        case .closing, .closed: return .refused(.closed)
        case .failed(let reason): return .refused(.writerFailed(reason))
        }
        if following { return .refused(.following) }
        let first = nextOffset.advanced(by: blockedRecords)
        let range = OffsetRange(first: first, last: first.advanced(by: UInt64(records.count - 1)))
        // FIFO: once anything waits for room, later appends wait behind it.
        if !blocked.isEmpty || (pendingBytes > 0 && pendingBytes + bytes > configuration.pendingBytesMax) {
            blocked.append(BlockedAppend(records: Array(records), bytes: bytes, timestampMs: timestampMs,
                                         continuation: continuation))
            blockedRecords += UInt64(records.count)
            return .queued(range, wakeEncoder: takeEncoderSleeping())
        }
        enqueue(records, bytes: bytes, timestampMs: timestampMs, continuation: continuation, configuration: configuration)
        return .queued(range, wakeEncoder: takeEncoderSleeping())
    }

    private mutating func enqueue(
        _ records: some Collection<ByteBuffer>,
        bytes: Int,
        timestampMs: Int64,
        continuation: UnsafeContinuation<OffsetRange, Error>?,
        configuration: JournalConfiguration
    ) {
        let first = nextOffset
        for record in records {
            let framedBytes = RecordFraming.prefixBytes + record.readableBytes
            if pending.isEmpty
                || pending[pending.count - 1].count == configuration.batchRecordsMax
                || pending[pending.count - 1].framed.readableBytes >= configuration.batchBytesTarget
                || pending[pending.count - 1].framed.readableBytes + framedBytes > configuration.batchBytesMax {
                var buffer = spareBuffers.popLast() ?? ByteBufferAllocator().buffer(capacity: 64 << 10)
                buffer.clear()
                pending.append(PendingBatch(framed: buffer, count: 0, baseOffset: nextOffset,
                                            firstTimestampMs: timestampMs, lastTimestampMs: timestampMs))
            }
            let last = pending.count - 1
            pending[last].framed.writeInteger(UInt32(record.readableBytes), endianness: .little)
            pending[last].framed.writeImmutableBuffer(record)
            pending[last].count += 1
            // Appenders read the clock before taking the lock, so keep timestamps monotonic.
            pending[last].lastTimestampMs = max(pending[last].lastTimestampMs, timestampMs)
            nextOffset = nextOffset.advanced(by: 1)
        }
        pendingBytes += bytes
        appendWaiters.append(AppendWaiter(continuation: continuation,
                                          range: OffsetRange(first: first, last: nextOffset.predecessor)))
    }

    /// Moves parked appends into the pending queue while there is room (always at least one
    /// when the queue is empty, so an append larger than the queue still makes progress).
    mutating func admitBlocked(configuration: JournalConfiguration) {
        var admitted = 0
        for append in blocked {
            guard pendingBytes == 0 || pendingBytes + append.bytes <= configuration.pendingBytesMax else { break }
            enqueue(append.records, bytes: append.bytes, timestampMs: append.timestampMs,
                    continuation: append.continuation, configuration: configuration)
            admitted += 1
            blockedRecords -= UInt64(append.records.count)
        }
        blocked.removeFirst(admitted)
    }
}

extension Offset {
    /// The offset before this one.
    var predecessor: Offset {
        precondition(value > 0, "offset 0 has no predecessor")
        return Offset(value - 1)
    }
}
