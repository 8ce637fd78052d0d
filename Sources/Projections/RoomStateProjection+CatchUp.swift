import ChatModel
import Dispatch
import Journal
import Synchronization

extension RoomStateProjection {
    /// Events decoded from one read of the journal.
    private struct DecodedChunk: Sendable {
        var events: [(offset: UInt64, event: ChatEvent)] = []
        var skipped = 0
        /// The offset after the last record the chunk covers.
        var end: Offset
    }

    /// A two-slot queue between the decoding thread and the applying one.
    private final class Pipeline: Sendable {
        let chunks = Mutex<[Result<DecodedChunk, ProjectionError>]>([])
        let filled = DispatchSemaphore(value: 0)
        let free = DispatchSemaphore(value: 2)
        let stopped = Mutex(false)
        let done = DispatchGroup()
    }

    /// Applies every event from `nextOffset` up to `target`, decoding on a second thread while
    /// this one applies: decoding and applying cost about the same, so the two overlap.
    /// `progress` gets the offset reached after each read of up to `readBytesMax` bytes.
    /// - Throws: `ProjectionError.malformedEvent` (everything before it is applied),
    ///   `JournalError` from reading.
    public mutating func catchUp(
        journal: Journal,
        until target: Offset,
        readBytesMax: Int = 4 << 20,
        progress: ((Offset) -> Void)? = nil
    ) throws {
        guard nextOffset < target else { return }
        let pipeline = Pipeline()
        let start = nextOffset
        pipeline.done.enter()
        DispatchQueue.global().async {
            defer { pipeline.done.leave() }
            var reader = journal.makeReader()
            var next = start
            while next < target {
                pipeline.free.wait()
                if pipeline.stopped.withLock({ $0 }) { return }
                let chunk = Result { () throws(ProjectionError) -> DecodedChunk in
                    let batches: [RecordBatch]
                    do throws(JournalError) {
                        batches = try reader.read(from: next, maxBytes: readBytesMax)
                    } catch {
                        throw .journal(error)
                    }
                    var chunk = DecodedChunk(end: next)
                    chunk.events.reserveCapacity(batches.reduce(0) { $0 + Int($1.header.recordCount) })
                    for batch in batches where batch.baseOffset < target {
                        for record in batch.records where record.offset >= next && record.offset < target {
                            switch try ProjectionError.decode(record, includeText: false) {
                            case .event(let event): chunk.events.append((record.offset.value, event))
                            case .unknown: chunk.skipped += 1
                            }
                        }
                        chunk.end = min(batch.nextOffset, target)
                    }
                    return chunk
                }
                let previous = next
                if case .success(let decoded) = chunk { next = decoded.end }
                pipeline.chunks.withLock { $0.append(chunk) }
                pipeline.filled.signal()
                // After an error, or a read that made no progress (the consumer reports it), stop.
                if next == previous { return }
            }
        }
        defer {
            // Stop the decoder and wait for it, whatever happened here.
            pipeline.stopped.withLock { $0 = true }
            pipeline.free.signal()
            pipeline.done.wait()
        }
        while nextOffset < target {
            pipeline.filled.wait()
            let chunk = pipeline.chunks.withLock { $0.removeFirst() }
            pipeline.free.signal()
            let decoded = try chunk.get()
            guard decoded.end > nextOffset else {
                throw ProjectionError.invalidQuery("the journal ended at \(nextOffset) before the target \(target)")
            }
            for (offset, event) in decoded.events {
                state.apply(event, at: offset)
            }
            skippedRecords += decoded.skipped
            nextOffset = decoded.end
            progress?(nextOffset)
        }
    }
}
