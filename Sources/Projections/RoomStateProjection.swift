import ChatModel
import Journal
import Logging
import NIOCore

/// The room state as a projection of the journal: the state, the offset up to which it has
/// applied events, and its snapshot file.
///
/// Not thread-safe; a value owned by one task (the projection runner, or the chat writer).
public struct RoomStateProjection: Sendable {
    public internal(set) var state: RoomState
    /// Every event below this offset has been applied.
    public internal(set) var nextOffset: Offset
    /// Records of unknown event versions or types skipped so far.
    public internal(set) var skippedRecords = 0
    public let snapshotPath: String
    /// The offset the snapshot file covers, when this value loaded or saved it: then saving
    /// again at the same offset would write the same bytes (`saveSnapshotIfBehind`).
    public internal(set) var snapshotOffset: Offset?

    /// An empty projection (replays from offset 0).
    public init(limits: ChatLimits, snapshotPath: String) {
        self.state = RoomState(limits: limits)
        self.nextOffset = .zero
        self.snapshotPath = snapshotPath
    }

    /// Starts from the snapshot when there is a usable one; otherwise from offset 0, saying
    /// why in the log.
    public static func load(limits: ChatLimits, snapshotPath: String, logger: Logger) -> RoomStateProjection {
        var projection = RoomStateProjection(limits: limits, snapshotPath: snapshotPath)
        do {
            guard let bytes = try AtomicFile.read(snapshotPath) else {
                logger.info("no room-state snapshot; replaying the journal from offset 0",
                            metadata: ["projection.snapshot": "\(snapshotPath)"])
                return projection
            }
            let (state, next) = try RoomStateSnapshot.decode(bytes, limits: limits)
            projection.state = state
            projection.nextOffset = next
            projection.snapshotOffset = next
            logger.info("room-state snapshot loaded", metadata: [
                "projection.snapshot": "\(snapshotPath)", "journal.offset": "\(next)", "projection.rooms": "\(state.roomCount)",
            ])
        } catch {
            logger.warning("room-state snapshot unusable; replaying the journal from offset 0", metadata: [
                "projection.snapshot": "\(snapshotPath)", "projection.error": "\(error)",
            ])
        }
        return projection
    }

    /// Applies the batch's events at or after `nextOffset` (earlier ones are already in).
    /// - Throws: `ProjectionError.malformedEvent` for a record of a known type that does not
    ///   decode: the journal holds what the rules cannot read, so replay stops.
    public mutating func apply(_ batch: RecordBatch) throws(ProjectionError) {
        guard batch.nextOffset > nextOffset else { return }
        for record in batch.records where record.offset >= nextOffset {
            switch try ProjectionError.decode(record, includeText: false) {
            case .event(let event):
                state.apply(event, at: record.offset.value)
            case .unknown:
                skippedRecords += 1
            }
        }
        nextOffset = batch.nextOffset
    }

    /// Folds an event the caller has just had committed at `offset` (the chat writer's path:
    /// it decided the event with this state). Offsets must follow `nextOffset` without a gap.
    public mutating func apply(_ event: ChatEvent, at offset: Offset) {
        precondition(offset == nextOffset, "room state at \(nextOffset) cannot apply an event at \(offset)")
        state.apply(event, at: offset.value)
        nextOffset = offset.advanced(by: 1)
    }

    /// Writes the snapshot (temp file, fsync, rename, fsync the directory).
    public mutating func saveSnapshot() throws(JournalError) {
        try AtomicFile.write(RoomStateSnapshot.encode(state, nextOffset: nextOffset), to: snapshotPath)
        snapshotOffset = nextOffset
    }

    /// Saves the snapshot unless the file already covers `nextOffset` (a start-up that had
    /// nothing to replay writes nothing).
    public mutating func saveSnapshotIfBehind() throws(JournalError) {
        guard snapshotOffset != nextOffset else { return }
        try saveSnapshot()
    }
}

/// Errors of the projections.
public enum ProjectionError: Error, Sendable, CustomStringConvertible {
    /// A journal record of a known event type does not decode.
    case malformedEvent(offset: Offset, ChatEventDecodingError)
    /// The projection's database failed.
    case database(String)
    /// A query asked for something out of range.
    case invalidQuery(String)
    /// Reading the journal failed.
    case journal(JournalError)

    public var description: String {
        switch self {
        case .malformedEvent(let offset, let error):
            "journal record at offset \(offset) is not a valid chat event: \(error)"
        case .database(let message):
            "projection database error: \(message)"
        case .invalidQuery(let message):
            message
        case .journal(let error):
            error.description
        }
    }

    static func decode(_ record: JournalRecord, includeText: Bool = true) throws(ProjectionError) -> ChatEventCodec.Decoded {
        do {
            return try ChatEventCodec.decode(record.payload, includeText: includeText)
        } catch {
            throw .malformedEvent(offset: record.offset, error)
        }
    }
}

extension RoomStateProjection {
    /// A projection of `state`, which covers every event below `nextOffset` (a server that
    /// maintained the state itself, saving it at shutdown).
    public init(state: RoomState, nextOffset: Offset, snapshotPath: String) {
        self.state = state
        self.nextOffset = nextOffset
        self.snapshotPath = snapshotPath
    }
}
