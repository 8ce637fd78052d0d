import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Synchronization

/// An append-only, segmented, checksummed, LZ4-compressed journal in one directory.
///
/// Records are opaque bytes. `append` copies records into the pending batch and assigns their
/// offsets, in one order, under the journal's lock. Two threads then form a pipeline: the
/// encoder takes everything appended while the previous group was being encoded (group
/// commit), compresses and checksums it; the writer writes each encoded group and, with the
/// default durability, fsyncs it before any of its appends return. The encoder compresses the
/// next group while the writer waits for the disk.
///
/// Thread-safe: any number of tasks may append, read and tail concurrently. Shared state sits
/// behind one mutex that is held only for bookkeeping, never across I/O; the writer thread
/// owns the files' write side. A journal must be `close()`d: its threads keep it alive.
public final class Journal: Sendable {
    public let directory: String
    public let configuration: JournalConfiguration
    /// What opening the journal found and repaired.
    public let recovery: RecoveryReport
    let logger: Logger
    let state: Mutex<State>
    /// Wakes the encoder thread; signalled only when it is asleep (see `State.encoderSleeping`).
    let encoderWakeup = DispatchSemaphore(value: 0)
    /// The hand-off between the encoder and writer threads (see `Journal+Encoder.swift` and `Journal+Writer.swift`).
    let handoff = Handoff()
    /// Held open for the journal's lifetime; closing it releases the `flock`.
    let lockFile: FileHandle

    init(
        directory: String,
        configuration: JournalConfiguration,
        logger: Logger,
        lockFile: FileHandle,
        recovery: RecoveryReport,
        segments: [Segment],
        epochs: LeaderEpochs,
        seenEpoch: UInt32,
        writer: WriterState
    ) {
        self.directory = directory
        self.configuration = configuration
        self.logger = logger
        self.lockFile = lockFile
        self.recovery = recovery
        let next = segments.last?.nextOffset ?? .zero
        var state = State(segments: segments, nextOffset: next, committedNext: next, epochs: epochs)
        state.seenEpoch = seenEpoch
        state.retentionFloor = configuration.retention.floor
        self.state = Mutex(state)
        startWriter(writer)
    }

    // MARK: Appending

    /// Appends one record and returns its offset once it is committed (durable, with the
    /// default durability).
    /// - Throws: `JournalError.recordTooLarge` (nothing written), `.writerFailed`, `.closed`.
    public func append(_ record: ByteBuffer) async throws -> Offset {
        let now = Self.nowMs()
        return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<OffsetRange, Error>) in
            withUnsafePointer(to: record) { pointer in
                submit(UnsafeBufferPointer(start: pointer, count: 1), timestampMs: now, continuation: continuation)
            }
        }.first
    }

    /// Appends records as one contiguous run of offsets and returns it once committed.
    ///
    /// The records may share a batch with other appends or span several batches of the same
    /// group. When `pendingBytesMax` bytes already wait for the writer, this waits for room
    /// first (back-pressure, in FIFO order).
    /// - Throws: `JournalError.emptyAppend`, `.recordTooLarge` (nothing written),
    ///   `.writerFailed`, `.closed`.
    public func append<Records: Collection & Sendable>(contentsOf records: Records) async throws -> OffsetRange
    where Records.Element == ByteBuffer {
        let now = Self.nowMs()
        return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<OffsetRange, Error>) in
            // Iterating an unspecialized generic collection allocates per element; hand the
            // records on as contiguous storage instead (Array and ArraySlice have it).
            let submitted: Void? = records.withContiguousStorageIfAvailable { buffer in
                submit(buffer, timestampMs: now, continuation: continuation)
            }
            if submitted == nil {
                Array(records).withUnsafeBufferPointer { buffer in
                    submit(buffer, timestampMs: now, continuation: continuation)
                }
            }
        }
    }

    /// Appends records as one contiguous run of offsets without waiting: returns the offsets
    /// they take at once, and the caller learns of their commit from `committedOffset`,
    /// `waitForCommit(of:)` or a tail (a failure from `waitForCommit`'s `writerFailed`).
    ///
    /// Offsets are fixed in the order of calls, also when the records must wait for room
    /// (`pendingBytesMax`): so a single writer that decides with the offsets its events will
    /// take (the chat server's decider) can call this under its own lock and know them before
    /// anything is written. Synchronous, no I/O: it takes the journal's lock only.
    /// - Throws: `JournalError.emptyAppend`, `.recordTooLarge` (nothing queued),
    ///   `.writerFailed`, `.closed`.
    public func submit(_ records: [ByteBuffer]) throws(JournalError) -> OffsetRange {
        let now = Self.nowMs()
        let outcome = records.withUnsafeBufferPointer { buffer in
            admit(buffer, timestampMs: now, continuation: nil)
        }
        switch outcome {
        case .success(let range): return range
        case .failure(let error): throw error
        }
    }

    /// Checks the records against the limits, then queues them (or parks them until there is
    /// room) and wakes the encoder; or resumes `continuation` with the error.
    private func submit(
        _ records: UnsafeBufferPointer<ByteBuffer>,
        timestampMs: Int64,
        continuation: UnsafeContinuation<OffsetRange, Error>
    ) {
        if case .failure(let error) = admit(records, timestampMs: timestampMs, continuation: continuation) {
            continuation.resume(throwing: error)
        }
    }

    /// The checks and the admission that both ways of appending share.
    private func admit(
        _ records: UnsafeBufferPointer<ByteBuffer>,
        timestampMs: Int64,
        continuation: UnsafeContinuation<OffsetRange, Error>?
    ) -> Result<OffsetRange, JournalError> {
        guard !records.isEmpty else { return .failure(.emptyAppend) }
        var bytes = 0
        for record in records {
            guard record.readableBytes <= configuration.recordBytesMax else {
                return .failure(.recordTooLarge(bytes: record.readableBytes, limit: configuration.recordBytesMax))
            }
            bytes += RecordFraming.prefixBytes + record.readableBytes
        }
        let recordBytes = bytes
        let outcome: AdmitOutcome = state.withLock { state in
            state.admit(records, bytes: recordBytes, timestampMs: timestampMs, continuation: continuation,
                        configuration: configuration)
        }
        switch outcome {
        case .queued(let range, let wakeEncoder):
            if wakeEncoder { encoderWakeup.signal() }
            return .success(range)
        case .refused(let error):
            return .failure(error)
        }
    }

    /// The offset the next appended record will get.
    public var nextOffset: Offset {
        state.withLock { $0.nextOffset }
    }

    /// Offsets below this are committed and readable.
    public var committedOffset: Offset {
        state.withLock { $0.committedNext }
    }

    /// The oldest retained offset.
    public var earliestOffset: Offset {
        state.withLock { $0.segments.first?.baseOffset ?? $0.committedNext }
    }

    /// Whether the journal still accepts appends (false after a storage failure or close).
    public var isHealthy: Bool {
        state.withLock { if case .open = $0.lifecycle { true } else { false } }
    }

    // MARK: Closing

    /// Writes and commits everything appended so far, stops the writer and releases the lock.
    /// Appends after this throw `JournalError.closed`; tails end once they have read everything.
    /// Safe to call more than once.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            enum Action { case resume, wakeEncoder, wait }
            let action: Action = state.withLock { state in
                switch state.lifecycle {
                case .closed:
                    return .resume
                case .failed:
                    // The writer thread has already stopped.
                    state.lifecycle = .closed
                    return .resume
                case .closing:
                    state.closeWaiters.append(continuation)
                    return .wait
                case .open:
                    state.lifecycle = .closing
                    state.closeWaiters.append(continuation)
                    return state.takeEncoderSleeping() ? .wakeEncoder : .wait
                }
            }
            switch action {
            case .resume: continuation.resume()
            case .wakeEncoder: encoderWakeup.signal()
            case .wait: break
            }
        }
        flock(lockFile.descriptor, LOCK_UN)
        for waiter in state.withLock({ $0.takeCommitWaiters() }) { waiter.resume() }
    }

    static func nowMs() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
