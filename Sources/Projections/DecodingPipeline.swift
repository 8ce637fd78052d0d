import ChatModel
import Dispatch
import Journal
import Synchronization

/// Events decoded from one read of the journal.
public struct DecodedChunk: Sendable {
    public var events: [(offset: UInt64, event: ChatEvent)] = []
    /// With a placer: each event's placement in the room state, parallel to `events`.
    public var placements: [RoomState.Placement] = []
    /// Records of unknown versions or types, skipped.
    public var skipped = 0
    /// The offset after the last record the chunk covers.
    public var end: Offset
}

/// Reads and decodes a range of the journal on a second thread while the caller's thread
/// consumes the decoded chunks, through a two-slot queue: replay's decoding and applying cost
/// about the same, so the two overlap on two cores. With a `RoomState.Placer`, the decoding
/// thread also places each event (its room slot and author reference: the hash lookups by
/// name), which moves that work off the applying thread.
enum DecodingPipeline {
    private final class Queue: Sendable {
        let chunks = Mutex<[Result<DecodedChunk, ProjectionError>]>([])
        let filled = DispatchSemaphore(value: 0)
        let free = DispatchSemaphore(value: 2)
        let stopped = Mutex(false)
        let done = DispatchGroup()
    }

    /// Calls `consume` with the events of `start..<target`, in order, one read of up to
    /// `readBytesMax` bytes at a time. Returns once all are consumed, or throws the first
    /// error (decoding, reading, or `consume`'s); the decoding thread has stopped either way.
    static func run(
        journal: Journal,
        from start: Offset,
        until target: Offset,
        readBytesMax: Int,
        includeText: Bool,
        placer: RoomState.Placer? = nil,
        consume: (DecodedChunk) throws -> Void
    ) throws {
        guard start < target else { return }
        let queue = Queue()
        queue.done.enter()
        DispatchQueue.global().async {
            defer { queue.done.leave() }
            var reader = journal.makeReader()
            var placer = placer
            var next = start
            while next < target {
                queue.free.wait()
                if queue.stopped.withLock({ $0 }) { return }
                let chunk = Result { () throws(ProjectionError) -> DecodedChunk in
                    let batches: [RecordBatch]
                    do throws(JournalError) {
                        batches = try reader.read(from: next, maxBytes: readBytesMax)
                    } catch {
                        throw .journal(error)
                    }
                    var chunk = DecodedChunk(end: next)
                    chunk.events.reserveCapacity(batches.reduce(0) { $0 + Int($1.header.recordCount) })
                    if placer != nil { chunk.placements.reserveCapacity(chunk.events.capacity) }
                    for batch in batches where batch.baseOffset < target {
                        for record in batch.records where record.offset >= next && record.offset < target {
                            switch try ProjectionError.decode(record, includeText: includeText) {
                            case .event(let event):
                                chunk.events.append((record.offset.value, event))
                                if let place = placer?.place(event) { chunk.placements.append(place) }
                            case .unknown: chunk.skipped += 1
                            }
                        }
                        chunk.end = min(batch.nextOffset, target)
                    }
                    return chunk
                }
                let previous = next
                if case .success(let decoded) = chunk { next = decoded.end }
                queue.chunks.withLock { $0.append(chunk) }
                queue.filled.signal()
                // After an error, or a read that made no progress (the consumer reports it), stop.
                if next == previous { return }
            }
        }
        defer {
            // Stop the decoder and wait for it, whatever happened here.
            queue.stopped.withLock { $0 = true }
            queue.free.signal()
            queue.done.wait()
        }
        var reached = start
        while reached < target {
            queue.filled.wait()
            let chunk = queue.chunks.withLock { $0.removeFirst() }
            queue.free.signal()
            let decoded = try chunk.get()
            guard decoded.end > reached else {
                throw ProjectionError.invalidQuery("the journal ended at \(reached) before \(target)")
            }
            try consume(decoded)
            reached = decoded.end
        }
    }
}
