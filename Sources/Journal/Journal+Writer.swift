#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import NIOCore
import Synchronization

/// Everything the writer thread owns. Built by `open`, then moved to the thread.
struct WriterState: Sendable {
    var active: ActiveSegment
    var indexBytes = ByteBufferAllocator().buffer(capacity: 256)
    /// Index entries not yet published to readers; the first `newEntriesInFile` of them are
    /// already in the index file.
    var newEntries: [IndexEntry] = []
    var newEntriesInFile = 0
    var lastSync = ContinuousClock.now
    var unsynced = false
    /// Bytes written since open, for `JournalConfiguration.failWritesAfterBytes`.
    var bytesWritten: Int64 = 0
    /// Written but not yet published to readers: the committed end and newest timestamp.
    var writtenNext: Offset
    var writtenTimestampMs: Int64?

    init(active: ActiveSegment, next: Offset, lastTimestampMs: Int64?) {
        self.active = active
        self.writtenNext = next
        self.writtenTimestampMs = lastTimestampMs
    }
}

/// A one-slot queue between the encoder and the writer, so that the encoder compresses group
/// n+1 while the writer writes and fsyncs group n. Two counting semaphores bound it: the
/// encoder waits for `slotFree`, the writer for `groupReady`.
final class Handoff: Sendable {
    enum Item: Sendable {
        case group(EncodedGroup)
        /// Closing: everything before this was handed over; sync and stop.
        case finish
    }

    struct Slot: ~Copyable {
        var item: Item?
        /// Emptied group buffers, returned to the encoder for reuse.
        var spareBuffers: [ByteBuffer] = []
        /// Set by the writer when it stops after a failure, so the encoder stops too.
        var writerStopped = false
    }

    let slot = Mutex(Slot())
    /// Made with a count of 0 and signalled once in `init`: libdispatch traps when a
    /// semaphore is released with a count below the one it was made with, which is where
    /// this one is left when the writer fails while the encoder waits for the slot (the
    /// writer's wake-up is consumed and not given back).
    let slotFree = DispatchSemaphore(value: 0)
    let groupReady = DispatchSemaphore(value: 0)

    init() {
        slotFree.signal()
    }
}

/// Carries a value into a new thread.
private final class ThreadContext: @unchecked Sendable {
    // Unchecked: handed from the opening task to the new thread exactly once, then owned by it.
    let body: () -> Void

    init(_ body: @escaping () -> Void) {
        self.body = body
    }
}

private func startThread(_ body: @escaping () -> Void) {
    let context = Unmanaged.passRetained(ThreadContext(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { argument in
        guard let argument else { preconditionFailure("a journal thread gets its context") }
        Unmanaged<ThreadContext>.fromOpaque(argument).takeRetainedValue().body()
        return nil
    }, context)
    precondition(result == 0, "pthread_create for a journal thread failed with \(result)")
    pthread_detach(thread)
}

extension Journal {
    func startWriter(_ writer: WriterState) {
        nonisolated(unsafe) var owned = writer
        startThread { [self] in runWriter(&owned) }
        startThread { [self] in runEncoder() }
    }

    // MARK: Writer thread

    /// Writes each encoded group, syncs as the durability policy says, publishes it.
    private func runWriter(_ writer: inout WriterState) {
        logger.info("journal writer started", metadata: [
            "journal.directory": "\(directory)",
            "journal.durability": "\(configuration.durability)",
            "journal.next_offset": "\(writer.writtenNext)",
        ])
        while true {
            do {
                guard try waitForGroup(&writer) else { continue }
                let item = handoff.slot.withLock { slot in
                    defer { slot.item = nil }
                    return slot.item
                }
                handoff.slotFree.signal()
                switch item {
                case .group(var group):
                    try write(group, writer: &writer)
                    group.bytes.clear()
                    let buffer = group.bytes
                    handoff.slot.withLock { slot in
                        if slot.spareBuffers.count < 2 { slot.spareBuffers.append(buffer) }
                    }
                case .finish:
                    try sync(&writer, force: true)
                    try writer.active.indexFile.sync()
                    publish(&writer)
                    finish()
                    return
                case nil:
                    preconditionFailure("groupReady is signalled only after an item is put in the slot")
                }
            } catch {
                fail(error)
                return
            }
        }
    }

    /// Waits for the encoder's next group. With interval durability and unsynced data, waits
    /// at most until the next sync is due and syncs then.
    /// - Returns: true when a group is ready, false after a timed sync.
    private func waitForGroup(_ writer: inout WriterState) throws(JournalError) -> Bool {
        guard case .interval(let interval) = configuration.durability, writer.unsynced else {
            handoff.groupReady.wait()
            return true
        }
        let remaining = ContinuousClock.now.duration(to: writer.lastSync.advanced(by: interval))
        let nanoseconds = max(0, remaining.components.seconds * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000)
        if handoff.groupReady.wait(timeout: .now() + .nanoseconds(Int(nanoseconds))) == .success {
            return true
        }
        try sync(&writer)
        return false
    }

    /// Writes one encoded group, rolling the segment before a batch that would not fit.
    private func write(_ group: EncodedGroup, writer: inout WriterState) throws(JournalError) {
        var flushed = 0  // bytes of `group.bytes` already written
        for (header, start) in group.batches {
            var position = writer.active.position.advanced(by: start - flushed)
            let startsSegment = if group.replicated {
                // Where the leader started a segment (an empty active segment at that base is it).
                header.baseOffset == group.segmentStart && writer.active.baseOffset != header.baseOffset
            } else {
                position.value > 0 && position.value + Int64(header.totalBytes) > configuration.segmentBytesMax
            }
            if startsSegment {
                try flush(group.bytes, from: flushed, to: start, writer: &writer)
                flushed = start
                try sync(&writer, force: true)
                publish(&writer)
                try roll(to: header.baseOffset, writer: &writer)
                position = writer.active.position
            }
            if position.value - writer.active.lastIndexedPosition.value >= configuration.indexIntervalBytes {
                writer.newEntries.append(IndexEntry(offset: header.baseOffset, position: position))
                writer.active.lastIndexedPosition = position
            }
            writer.writtenNext = header.nextOffset
            writer.writtenTimestampMs = max(writer.writtenTimestampMs ?? header.lastTimestampMs, header.lastTimestampMs)
        }
        try flush(group.bytes, from: flushed, to: group.bytes.readableBytes, writer: &writer)
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

    /// Writes `bytes[from..<to]` at the end of the active segment, and the index entries
    /// gathered for them.
    private func flush(_ bytes: ByteBuffer, from: Int, to: Int, writer: inout WriterState) throws(JournalError) {
        guard to > from else { return }
        guard let slice = bytes.getSlice(at: bytes.readerIndex + from, length: to - from) else {
            preconditionFailure("a group's batches lie within its bytes (\(from)..<\(to) of \(bytes.readableBytes))")
        }
        if let limit = configuration.failWritesAfterBytes {
            writer.bytesWritten += Int64(to - from)
            if writer.bytesWritten > limit {
                throw .io(operation: "pwrite (fault injected: failWritesAfterBytes \(limit))", path: writer.active.file.path, errno: EIO)
            }
        }
        try writer.active.file.write(slice, at: writer.active.position)
        writer.active.position = writer.active.position.advanced(by: to - from)
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
        let started = ContinuousClock.now
        try writer.active.file.sync()
        writer.unsynced = false
        writer.lastSync = .now
        JournalMetrics.fsync.recordDuration(started.duration(to: writer.lastSync))
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
        if !appends.isEmpty {
            let now = ContinuousClock.now
            var events = 0
            for append in appends {
                JournalMetrics.commitLatency.recordDuration(append.queued.duration(to: now))
                events += Int(append.range.count)
            }
            JournalMetrics.eventsCommitted.increment(by: events)
        }
        for append in appends { append.continuation?.resume(returning: append.range) }
        for tail in tails { tail.resume() }
    }

    /// Seals the active segment and starts a new one at `base`.
    private func roll(to base: Offset, writer: inout WriterState) throws(JournalError) {
        try writer.active.indexFile.sync()
        let sealed = writer.active.baseOffset
        writer.active = try Segment.create(base: base, directory: directory)
        let file = writer.active.file
        state.withLock { state in
            state.segments.append(Segment(baseOffset: base, file: file, index: SegmentIndex(baseOffset: base),
                                               sizeBytes: 0, nextOffset: base, lastTimestampMs: nil))
        }
        logger.info("journal segment rolled", metadata: [
            "journal.sealed_segment": "\(JournalFiles.segmentName(sealed))",
            "journal.segment": "\(JournalFiles.segmentName(base))",
        ])
        try applyRetention()
    }

    /// Fail-stop: nothing more is accepted, every waiting append learns why, and the encoder
    /// stops at its next hand-off.
    private func fail(_ error: JournalError) {
        let reason = error.description
        logger.critical("journal write failed; refusing further appends", metadata: ["journal.error": "\(reason)"])
        handoff.slot.withLock { $0.writerStopped = true }
        handoff.slotFree.signal()
        let (appends, blocked, tails, closers) = state.withLock { state in
            let closing = if case .closing = state.lifecycle { true } else { false }
            state.lifecycle = closing ? .closed : .failed(reason)
            defer {
                state.appendWaiters.removeAll()
                state.blocked.removeAll()
                state.blockedRecords = 0
                state.pending.removeAll()
                state.pendingBytes = 0
                state.closeWaiters.removeAll()
            }
            return (state.appendWaiters, state.blocked, state.takeCommitWaiters(), state.closeWaiters)
        }
        // The encoder may be asleep: wake it so it sees the lifecycle and stops.
        if state.withLock({ $0.takeEncoderSleeping() }) { encoderWakeup.signal() }
        for append in appends { append.continuation?.resume(throwing: JournalError.writerFailed(reason)) }
        for append in blocked { append.continuation?.resume(throwing: JournalError.writerFailed(reason)) }
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
