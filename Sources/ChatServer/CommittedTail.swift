import ChatModel
import Journal

/// The committed journal from an offset on, batch by batch, as it commits: the one way the
/// server follows its journal. The `Tailer` (room state and broadcasts) and the
/// `ProjectionWriter`s (History, the search index) each own one, so that a SQLite transaction is never on the path
/// from commit to broadcast and ack, and all see the same batches in the same order.
///
/// (`Journal.records(from:)` is the journal's own tail, record by record; the server needs
/// batches, for one transaction and one fan-out lock per read, and `CommitPoint`'s end, which
/// with synchronous replicas is before the journal's.)
///
/// A value owned by one task.
struct CommittedTail {
    let commit: CommitPoint
    let readBytesMax: Int
    private var reader: JournalReader
    /// Where the next read starts: everything before it has been returned.
    private(set) var next: Offset

    init(commit: CommitPoint, from offset: Offset, readBytesMax: Int) {
        self.commit = commit
        self.readBytesMax = readBytesMax
        reader = commit.journal.makeReader()
        next = offset
    }

    /// The next committed batches (whole: the first may begin before `next`, and at most
    /// `readBytesMax` of them, at least one), waiting for a commit when there are none.
    /// - Parameter waiting: false returns nil at once when nothing more is committed.
    /// - Returns: nil once the journal is closed and everything committed has been read.
    /// - Throws: `JournalError` (storage, corruption), `CancellationError`.
    mutating func nextBatches(waiting: Bool = true) async throws -> ArraySlice<RecordBatch>? {
        while true {
            if waiting {
                guard try await commit.wait(for: next) else { return nil }
            } else if next >= commit.end {
                return nil
            }
            let batches = commit.committed(try reader.read(from: next, maxBytes: readBytesMax))
            guard let end = batches.last?.nextOffset else {
                if waiting { continue } else { return nil }
            }
            defer { next = end }
            return batches
        }
    }

    /// The chat events of `batches` from `start` on, in offset order; records of a type this
    /// build does not know are skipped (FORMAT.md §5).
    /// - Throws: `ChatEventDecodingError` for a malformed record: the journal is corrupt.
    static func events(in batches: ArraySlice<RecordBatch>, from start: Offset) throws -> [(Offset, ChatEvent)] {
        var events: [(Offset, ChatEvent)] = []
        for batch in batches {
            for record in batch.records where record.offset >= start {
                switch try ChatEventCodec.decode(record.payload) {
                case .event(let event): events.append((record.offset, event))
                case .unknown: continue
                }
            }
        }
        return events
    }
}
