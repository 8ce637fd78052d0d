#if canImport(Glibc)
import Glibc
#endif
import ChatModel
import Journal
import Logging
import NIOCore

/// Which projections a runner maintains.
public enum ProjectionKind: String, Sendable, CaseIterable {
    case roomState = "room-state"
    case history
}

/// Where a journal's projections live: `<journal>/projections/`. Derived data: the directory
/// may be deleted at any time and is rebuilt from the journal.
public struct ProjectionPaths: Sendable {
    public let directory: String

    public init(journalDirectory: String) {
        directory = journalDirectory + "/projections"
    }

    public var roomStateSnapshot: String { directory + "/room-state.snapshot" }
    public var history: String { directory + "/history.sqlite" }
}

/// Keeps projections up to date with a journal.
///
/// `catchUp` brings each projection from its own checkpoint to the committed offset it finds:
/// first the room state, decoding on a second thread while applying (`DecodingPipeline`), then
/// History, one read (`catchUpReadBytesMax` of batches) per transaction. The server then follows
/// the journal with its own readers (`Tailer`, `HistoryWriter`).
///
/// Not thread-safe; owned by one task.
public final class ProjectionRunner {
    public let journal: Journal
    public private(set) var roomState: RoomStateProjection?
    public let history: HistoryProjection?
    let logger: Logger
    /// Bytes of batches the room state's catch-up reads at a time.
    public var readBytesMax = 4 << 20
    /// The same during a catch-up: larger History transactions rewrite each room's open block
    /// less often. Bounds the memory of one catch-up step.
    public var catchUpReadBytesMax = 16 << 20
    private var reader: JournalReader

    public init(journal: Journal, paths: ProjectionPaths, kinds: Set<ProjectionKind> = Set(ProjectionKind.allCases),
                limits: ChatLimits = ChatLimits(), logger: Logger) throws {
        try Directory.make(paths.directory)
        self.journal = journal
        self.logger = logger
        self.reader = journal.makeReader()
        roomState = kinds.contains(.roomState)
            ? RoomStateProjection.load(limits: limits, snapshotPath: paths.roomStateSnapshot, logger: logger) : nil
        history = kinds.contains(.history) ? try HistoryProjection(path: paths.history) : nil
    }

    /// The lowest offset some projection still needs.
    public func nextOffset() throws -> Offset {
        var next = journal.committedOffset
        if let roomState { next = min(next, roomState.nextOffset) }
        if let history { next = min(next, try history.nextOffset()) }
        return next
    }

    /// Applies everything committed when called (or up to `until`): first the room state
    /// (decoding and applying on two threads), then History (one transaction per read).
    /// `progress` gets (work done, total work), counted in events per projection.
    public func catchUp(until: Offset? = nil, progress: ((UInt64, UInt64) -> Void)? = nil) throws {
        let target = min(journal.committedOffset, until ?? journal.committedOffset)
        let start = try nextOffset()
        if start < journal.earliestOffset {
            throw ProjectionError.invalidQuery("the projections need offset \(start) but the journal retains only from \(journal.earliestOffset): rebuild them")
        }
        let roomStateStart = roomState?.nextOffset ?? target
        let historyStart = try history?.nextOffset() ?? target
        let roomStateWork = target.value - min(target.value, roomStateStart.value)
        let total = roomStateWork + target.value - min(target.value, historyStart.value)
        if var projection = roomState, roomStateStart < target {
            roomState = nil  // keep the state uniquely referenced while it changes
            defer { roomState = projection }
            try projection.catchUp(journal: journal, until: target, readBytesMax: readBytesMax) { reached in
                progress?(reached.value - roomStateStart.value, total)
            }
        }
        // History decodes on this thread: measured, decoding on a second one made no
        // difference (SQLite is the bound) and doubled the memory held in decoded chunks.
        var next = historyStart
        while let history, next < target {
            let batches = try reader.read(from: next, maxBytes: catchUpReadBytesMax).filter { $0.baseOffset < target }
            guard let end = batches.last?.nextOffset else {
                throw ProjectionError.invalidQuery("the journal ended at \(next) before \(target)")
            }
            try history.apply(batches, deferTails: true)
            next = end
            progress?(roomStateWork + next.value - historyStart.value, total)
        }
        try history?.writeDeferredTails()
        try saveSnapshot()
        try history?.eraseDeletedText()
    }

    /// Saves the room-state snapshot, unless its file already covers the state.
    public func saveSnapshot() throws {
        guard var projection = roomState else { return }
        roomState = nil  // keep the state uniquely referenced
        defer { roomState = projection }
        try projection.saveSnapshotIfBehind()
    }
}

/// Directory creation without Foundation.
enum Directory {
    static func make(_ path: String) throws {
        if mkdir(path, 0o755) != 0, errno != EEXIST {
            throw JournalError.io(operation: "mkdir", path: path, errno: errno)
        }
    }
}
