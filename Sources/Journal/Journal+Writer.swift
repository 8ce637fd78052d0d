#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import NIOCore

/// The write side of the active segment. Owned by the writer thread alone.
struct ActiveSegment: Sendable {
    let baseOffset: Offset
    let file: FileHandle
    let indexFile: FileHandle
    /// End of the segment's data: where the next batch goes.
    var position: FilePosition
    /// End of the index file: where the next entry goes.
    var indexPosition: FilePosition
    var lastIndexedPosition: FilePosition
}

/// Everything the writer thread owns. Built by `open`, then moved to the thread.
struct WriterState: Sendable {
    var active: ActiveSegment
    /// Reused buffers: batch bytes of one write, LZ4 output, index entries.
    var output = ByteBufferAllocator().buffer(capacity: 1 << 20)
    var scratch: [UInt8] = []
    var indexBytes = ByteBufferAllocator().buffer(capacity: 256)
    /// Index entries not yet published to readers; the first `newEntriesInFile` of them are
    /// already in the index file.
    var newEntries: [IndexEntry] = []
    var newEntriesInFile = 0
    var lastSync = ContinuousClock.now
    var unsynced = false
    /// Written but not yet published to readers: the committed end and newest timestamp.
    var writtenNext: Offset
    var writtenTimestampMs: Int64?

    init(active: ActiveSegment, next: Offset, lastTimestampMs: Int64?) {
        self.active = active
        self.writtenNext = next
        self.writtenTimestampMs = lastTimestampMs
    }
}

/// Carries the writer's state into its thread.
private final class WriterThreadContext: @unchecked Sendable {
    // Unchecked: handed from the opening task to the new thread exactly once, then owned by it.
    let journal: Journal
    var writer: WriterState

    init(journal: Journal, writer: WriterState) {
        self.journal = journal
        self.writer = writer
    }
}

extension Journal {
    func startWriter(_ writer: WriterState) {
        let context = Unmanaged.passRetained(WriterThreadContext(journal: self, writer: writer)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            guard let argument else { preconditionFailure("the writer thread gets its context") }
            let context = Unmanaged<WriterThreadContext>.fromOpaque(argument).takeRetainedValue()
            context.journal.runWriter(&context.writer)
            return nil
        }, context)
        precondition(result == 0, "pthread_create for the journal writer failed with \(result)")
        pthread_detach(thread)
    }

    /// The writer thread: take everything pending, write it as one group, commit, repeat.
    func runWriter(_ writer: inout WriterState) {
        logger.info("journal writer started", metadata: [
            "journal.directory": "\(directory)",
            "journal.durability": "\(configuration.durability)",
            "journal.next_offset": "\(writer.writtenNext)",
        ])
        while true {
            enum Work {
                case write([PendingBatch])
                case sleep
                case finish
            }
            let work: Work = state.withLock { state in
                if !state.pending.isEmpty {
                    let batches = state.pending
                    state.pending.removeAll(keepingCapacity: true)
                    state.pendingBytes = 0
                    // Appends parked for room join the next group while this one is written.
                    state.admitBlocked(configuration: configuration)
                    return .write(batches)
                }
                switch state.lifecycle {
                case .open:
                    state.writerSleeping = true
                    return .sleep
                case .closing, .failed, .closed:
                    return .finish
                }
            }
            do {
                switch work {
                case .write(let batches):
                    try write(batches, writer: &writer)
                    recycle(batches)
                case .sleep:
                    try sleep(writer: &writer)
                case .finish:
                    try sync(&writer)
                    try writer.active.indexFile.sync()
                    publish(&writer)
                    finish()
                    return
                }
            } catch {
                fail(error)
                return
            }
        }
    }

    private func sleep(writer: inout WriterState) throws(JournalError) {
        guard case .interval(let interval) = configuration.durability, writer.unsynced else {
            writerWakeup.wait()
            return
        }
        let due = writer.lastSync.advanced(by: interval)
        let remaining = ContinuousClock.now.duration(to: due)
        let nanoseconds = max(0, remaining.components.seconds * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000)
        if writerWakeup.wait(timeout: .now() + .nanoseconds(Int(nanoseconds))) == .timedOut {
            // Nobody signalled, so the flag is still set: clear it before doing I/O.
            let stillAsleep = state.withLock { $0.takeWriterSleeping() }
            try sync(&writer)
            if !stillAsleep { writerWakeup.wait() }  // consume the signal that raced with the timeout
        }
    }

    /// Writes the batches of one group: encodes them into one buffer, rolls the segment where
    /// the next batch would not fit, then syncs as the durability policy says and publishes.
    private func write(_ batches: [PendingBatch], writer: inout WriterState) throws(JournalError) {
        writer.output.clear()
        for batch in batches {
            let start = writer.output.writerIndex
            let header = BatchCodecIO.encode(
                framed: batch.framed, count: batch.count, baseOffset: batch.baseOffset,
                leaderEpoch: configuration.leaderEpoch, firstTimestampMs: batch.firstTimestampMs,
                lastTimestampMs: batch.lastTimestampMs, scratch: &writer.scratch, into: &writer.output
            )
            let position = writer.active.position.advanced(by: start - writer.output.readerIndex)
            if position.value > 0, position.value + Int64(header.totalBytes) > configuration.segmentBytesMax {
                try flush(upTo: start, writer: &writer)
                try sync(&writer, force: true)
                publish(&writer)
                try roll(to: header.baseOffset, writer: &writer)
            }
            let batchPosition = writer.active.position.advanced(by: start - writer.output.readerIndex)
            if batchPosition.value - writer.active.lastIndexedPosition.value >= configuration.indexIntervalBytes {
                writer.newEntries.append(IndexEntry(offset: header.baseOffset, position: batchPosition))
                writer.active.lastIndexedPosition = batchPosition
            }
            writer.writtenNext = header.nextOffset
            writer.writtenTimestampMs = max(writer.writtenTimestampMs ?? header.lastTimestampMs, header.lastTimestampMs)
        }
        try flush(upTo: writer.output.writerIndex, writer: &writer)
        switch configuration.durability {
        case .everyBatch:
            try sync(&writer)
        case .interval(let interval):
            if writer.lastSync.duration(to: .now) >= interval { try sync(&writer) }
        case .none:
            break
        }
        publish(&writer)
    }

    /// Writes the output bytes before `end` at the end of the active segment, and the index
    /// entries gathered for them.
    private func flush(upTo end: Int, writer: inout WriterState) throws(JournalError) {
        let count = end - writer.output.readerIndex
        guard count > 0, let bytes = writer.output.readSlice(length: count) else { return }
        try writer.active.file.write(bytes, at: writer.active.position)
        writer.active.position = writer.active.position.advanced(by: count)
        writer.unsynced = true
        if writer.newEntriesInFile < writer.newEntries.count {
            writer.indexBytes.clear()
            for entry in writer.newEntries[writer.newEntriesInFile...] {
                SegmentIndex.encode(entry, base: writer.active.baseOffset, into: &writer.indexBytes)
            }
            try writer.active.indexFile.write(writer.indexBytes, at: writer.active.indexPosition)
            writer.active.indexPosition = writer.active.indexPosition.advanced(by: writer.indexBytes.readableBytes)
            writer.newEntriesInFile = writer.newEntries.count
        }
    }

    private func sync(_ writer: inout WriterState, force: Bool = false) throws(JournalError) {
        guard writer.unsynced, force || configuration.durability != .none else { return }
        try writer.active.file.sync()
        writer.unsynced = false
        writer.lastSync = .now
    }

    /// Makes everything written visible: segment size, index entries, committed offset; then
    /// resumes the appends and tails waiting for it.
    private func publish(_ writer: inout WriterState) {
        let entries = writer.newEntries
        writer.newEntries.removeAll(keepingCapacity: true)
        writer.newEntriesInFile = 0
        let (appends, tails): ([AppendWaiter], [CheckedContinuation<Void, Never>]) = state.withLock { state in
            guard var segment = state.segments.popLast() else {
                preconditionFailure("a journal always has an active segment")
            }
            precondition(segment.baseOffset == writer.active.baseOffset,
                         "published segment \(segment.baseOffset) is not the active \(writer.active.baseOffset)")
            for entry in entries { segment.index.append(entry) }
            segment.sizeBytes = writer.active.position.value
            segment.nextOffset = writer.writtenNext
            segment.lastTimestampMs = writer.writtenTimestampMs
            state.segments.append(segment)
            guard state.committedNext < writer.writtenNext else { return ([], []) }
            state.committedNext = writer.writtenNext
            let done = state.appendWaiters.prefix { $0.range.last < writer.writtenNext }.count
            let appends = Array(state.appendWaiters.prefix(done))
            state.appendWaiters.removeFirst(done)
            return (appends, state.takeCommitWaiters())
        }
        for append in appends { append.continuation.resume(returning: append.range) }
        for tail in tails { tail.resume() }
    }

    /// Seals the active segment and starts a new one at `base`.
    private func roll(to base: Offset, writer: inout WriterState) throws(JournalError) {
        try writer.active.indexFile.sync()
        let sealed = writer.active.baseOffset
        writer.active = try Self.createSegment(base: base, directory: directory)
        let file = writer.active.file
        state.withLock { state in
            state.segments.append(SegmentState(baseOffset: base, file: file, index: SegmentIndex(baseOffset: base),
                                               sizeBytes: 0, nextOffset: base, lastTimestampMs: nil))
        }
        logger.info("journal segment rolled", metadata: [
            "journal.sealed_segment": "\(JournalFiles.segmentName(sealed))",
            "journal.segment": "\(JournalFiles.segmentName(base))",
        ])
        try applyRetention()
    }

    /// Creates an empty segment file and its index (header only), durably.
    static func createSegment(base: Offset, directory: String) throws(JournalError) -> ActiveSegment {
        let file = try FileHandle.open(JournalFiles.join(directory, JournalFiles.segmentName(base)),
                                       flags: O_RDWR | O_CREAT | O_EXCL)
        let indexFile = try FileHandle.open(JournalFiles.join(directory, JournalFiles.indexName(base)),
                                            flags: O_RDWR | O_CREAT | O_TRUNC)
        let header = SegmentIndex(baseOffset: base).encodedHeader()
        try indexFile.write(header, at: .zero)
        try FileSystem.syncDirectory(directory)
        return ActiveSegment(baseOffset: base, file: file, indexFile: indexFile, position: .zero,
                             indexPosition: FilePosition(Int64(header.readableBytes)), lastIndexedPosition: .zero)
    }

    /// Deletes whole sealed segments past the retention limits. Readers holding a deleted
    /// segment keep reading it through their open descriptor.
    func applyRetention() throws(JournalError) {
        let retention = configuration.retention
        guard retention.totalBytesMax != nil || retention.age != nil else { return }
        let nowMs = Self.nowMs()
        let expired: [SegmentState] = state.withLock { state in
            let count = Self.retentionCut(state.segments, retention: retention, nowMs: nowMs)
            defer { state.segments.removeFirst(count) }
            return Array(state.segments.prefix(count))
        }
        try Self.deleteSegments(expired[...], directory: directory, logger: logger)
    }

    /// How many of the oldest segments retention removes. Never the last (active) one.
    static func retentionCut(_ segments: [SegmentState], retention: Retention, nowMs: Int64) -> Int {
        var total = segments.reduce(Int64(0)) { $0 + $1.sizeBytes }
        let ageMs = retention.age.map { $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000 }
        var count = 0
        while count < segments.count - 1 {
            let segment = segments[count]
            let tooBig = retention.totalBytesMax.map { total > $0 } ?? false
            let tooOld = ageMs.map { (segment.lastTimestampMs ?? nowMs) < nowMs - $0 } ?? false
            guard tooBig || tooOld else { break }
            total -= segment.sizeBytes
            count += 1
        }
        return count
    }

    static func deleteSegments(_ segments: ArraySlice<SegmentState>, directory: String, logger: Logger) throws(JournalError) {
        for segment in segments {
            try FileSystem.remove(JournalFiles.join(directory, JournalFiles.segmentName(segment.baseOffset)))
            try FileSystem.remove(JournalFiles.join(directory, JournalFiles.indexName(segment.baseOffset)))
            logger.info("journal segment deleted by retention", metadata: [
                "journal.segment": "\(JournalFiles.segmentName(segment.baseOffset))",
                "journal.segment_bytes": "\(segment.sizeBytes)",
                "journal.next_offset": "\(segment.nextOffset)",
            ])
        }
        if !segments.isEmpty { try FileSystem.syncDirectory(directory) }
    }

    private func recycle(_ batches: [PendingBatch]) {
        state.withLock { state in
            for var batch in batches where state.spareBuffers.count < 8 {
                batch.framed.clear()
                state.spareBuffers.append(batch.framed)
            }
        }
    }

    /// Fail-stop: nothing more is accepted, and every waiting append learns why.
    private func fail(_ error: JournalError) {
        let reason = error.description
        logger.critical("journal write failed; refusing further appends", metadata: ["journal.error": "\(reason)"])
        let (appends, blocked, tails, closers) = state.withLock { state in
            let closing = if case .closing = state.lifecycle { true } else { false }
            state.lifecycle = closing ? .closed : .failed(reason)
            defer {
                state.appendWaiters.removeAll()
                state.blocked.removeAll()
                state.pending.removeAll()
                state.pendingBytes = 0
                state.closeWaiters.removeAll()
            }
            return (state.appendWaiters, state.blocked, state.takeCommitWaiters(), state.closeWaiters)
        }
        for append in appends { append.continuation.resume(throwing: JournalError.writerFailed(reason)) }
        for append in blocked { append.continuation.resume(throwing: JournalError.writerFailed(reason)) }
        for tail in tails { tail.resume() }
        for closer in closers { closer.resume() }
    }

    /// After close: everything pending is written and synced; wake whoever waits.
    private func finish() {
        let (tails, closers) = state.withLock { state in
            state.lifecycle = .closed
            defer { state.closeWaiters.removeAll() }
            return (state.takeCommitWaiters(), state.closeWaiters)
        }
        logger.info("journal closed", metadata: ["journal.directory": "\(directory)"])
        for tail in tails { tail.resume() }
        for closer in closers { closer.resume() }
    }
}
