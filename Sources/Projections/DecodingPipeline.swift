import ChatModel
import Dispatch
import Journal
import Synchronization

/// Events decoded and placed from one read of the journal, for the room state.
public struct DecodedChunk: Sendable {
    /// In offset order, for `RoomState.apply(_:)`.
    public var items: [RoomState.PlacedItem] = []
    /// Records of unknown versions or types, skipped.
    public var skipped = 0
    /// The offset after the last record the chunk covers.
    public var end: Offset
}

/// Reads and decodes a range of the journal on a second thread while the caller's thread
/// consumes the decoded chunks, through a two-slot queue: replay's decoding and applying cost
/// about the same, so the two overlap on two cores. The decoding thread also places each
/// event with a `RoomState.Placer` (its room slot and author reference: the lookups by name),
/// which moves that work off the applying thread; messages (nearly every record) are placed
/// straight from their bytes, without building their names.
enum DecodingPipeline {
    private final class Queue: Sendable {
        let chunks = Mutex<[Result<DecodedChunk, ProjectionError>]>([])
        let filled = DispatchSemaphore(value: 0)
        /// Two slots, given by signals rather than the initial count: libdispatch traps when a
        /// semaphore is released below the count it was made with, as this one is when the
        /// consumer stops early with chunks not taken.
        let free = DispatchSemaphore(value: 0)
        let stopped = Mutex(false)
        let done = DispatchGroup()

        init() {
            free.signal()
            free.signal()
        }
    }

    /// Calls `consume` with the events of `start..<target`, in order, one read of up to
    /// `readBytesMax` bytes at a time. Returns once all are consumed, or throws the first
    /// error (decoding, reading, or `consume`'s); the decoding thread has stopped either way.
    static func run(
        journal: Journal,
        from start: Offset,
        until target: Offset,
        readBytesMax: Int,
        placer: RoomState.Placer,
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
                    return try decode(batches, from: next, until: target, placer: &placer)
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

    /// The events of `batches` in `next..<target`: messages placed from their bytes, other
    /// events decoded and placed. Records are lent in place (no batch copied, no buffer per
    /// record: each was a retain and a release of the shared read buffer), and the closure
    /// captures only this function's locals (captured by the nested function it was, they
    /// were checked for exclusive access at run time on every record).
    private static func decode(
        _ batches: [RecordBatch],
        from next: Offset,
        until target: Offset,
        placer: inout RoomState.Placer
    ) throws(ProjectionError) -> DecodedChunk {
        var chunk = DecodedChunk(end: next)
        chunk.items.reserveCapacity(batches.reduce(0) { $0 + Int($1.header.recordCount) })
        var failure: ProjectionError?
        for index in batches.indices where batches[index].baseOffset < target {
            batches[index].forEachRecord { offset, bytes in
                guard failure == nil, offset >= next, offset < target else { return }
                do throws(ChatEventDecodingError) {
                    // The text is not the room state's business: length-checked only.
                    if let fields = try ChatEventCodec.messageSentFields(bytes, includeText: false) {
                        // Nil: a message to a room that does not exist changes nothing.
                        if let message = placer.placeMessage(offset: offset.value, fields: fields) {
                            chunk.items.append(.message(message))
                        }
                        return
                    }
                    switch try ChatEventCodec.decode(bytes: bytes, includeText: false) {
                    case .event(let event): chunk.items.append(.event(offset: offset.value, event, placer.place(event)))
                    case .unknown: chunk.skipped += 1
                    }
                } catch {
                    failure = .malformedEvent(offset: offset, error)
                }
            }
            if let failure { throw failure }
            chunk.end = min(batches[index].nextOffset, target)
        }
        return chunk
    }
}
