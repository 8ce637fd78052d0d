#if canImport(Glibc)
import Glibc
#endif
import ChatModel
import Dispatch
import Journal
import Logging
import NIOCore
import Synchronization

/// Which projections a runner maintains.
public enum ProjectionKind: String, Sendable, CaseIterable {
    case roomState = "room-state"
    case history
    case search
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
    public var search: String { directory + "/search.sqlite" }
}

/// Keeps projections up to date with a journal.
///
/// `catchUp` brings each projection from its own checkpoint to the committed offset it finds:
/// first the room state, decoding on a second thread while applying (`DecodingPipeline`), then
/// History and Search side by side on two threads, each one read (`catchUpReadBytesMax` of
/// batches) per transaction. The server then follows the journal with its own readers
/// (`Tailer`, and a `ProjectionWriter` for History and one for Search).
///
/// Not thread-safe; owned by one task.
public final class ProjectionRunner {
    public let journal: Journal
    public private(set) var roomState: RoomStateProjection?
    public let history: HistoryProjection?
    public let search: SearchProjection?
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
        // Search starts from History's messages where the journal does not reach back.
        history = kinds.contains(.history) || kinds.contains(.search) ? try HistoryProjection(path: paths.history) : nil
        search = kinds.contains(.search) ? try SearchProjection(path: paths.search) : nil
    }

    /// The lowest offset some projection still needs. (Search does not count: when the journal
    /// no longer holds what it needs, it starts from History's messages.)
    public func nextOffset() throws -> Offset {
        var next = journal.committedOffset
        if let roomState { next = min(next, roomState.nextOffset) }
        if let history { next = min(next, try history.nextOffset()) }
        return next
    }

    /// Applies everything committed when called (or up to `until`): first the room state
    /// (decoding and applying on two threads), then History and Search on two threads (one
    /// transaction per read each). `progress` gets (work done, total work), counted in events
    /// per projection.
    public func catchUp(until: Offset? = nil, progress: ((UInt64, UInt64) -> Void)? = nil) throws {
        let target = min(journal.committedOffset, until ?? journal.committedOffset)
        let start = try nextOffset()
        if start < journal.earliestOffset {
            throw ProjectionError.invalidQuery("the projections need offset \(start) but the journal retains only from \(journal.earliestOffset): rebuild them")
        }
        let roomStateStart = roomState?.nextOffset ?? target
        let historyStart = try history?.nextOffset() ?? target
        let roomStateWork = target.value - min(target.value, roomStateStart.value)
        let searchStart = try search?.nextOffset() ?? target
        // The index starts again from History's messages when it needs what is gone: events
        // the journal no longer holds, or texts History no longer keeps for it (it was rebuilt
        // alone, or History is of an older layout).
        let seeding = try search != nil && (searchStart < journal.earliestOffset || searchStart < history?.replacedFloor() ?? .zero)
        let searchWork = seeding ? 0 : target.value - min(target.value, searchStart.value)
        let total = roomStateWork + target.value - min(target.value, historyStart.value) + searchWork
        if var projection = roomState, roomStateStart < target {
            roomState = nil  // keep the state uniquely referenced while it changes
            defer { roomState = projection }
            try projection.catchUp(journal: journal, until: target, readBytesMax: readBytesMax) { reached in
                progress?(reached.value - roomStateStart.value, total)
            }
        }
        // Search follows the journal on a second thread while History does on this one; both
        // are SQLite-bound, each in its own file. (History decodes on this thread: measured,
        // decoding on a second one made no difference and doubled the memory held.) Search
        // applies a read only once History has (an edit's replaced text comes from History).
        let searched = Atomic<UInt64>(0)
        let historyReached = Atomic<UInt64>(historyStart < target ? historyStart.value : .max)
        let searchFailure = Mutex<(any Error)?>(nil)
        let group = DispatchGroup()
        if let search, let history, !seeding, searchStart < target {
            let (journal, readBytesMax) = (journal, catchUpReadBytesMax)
            DispatchQueue.global().async(group: group) {
                do {
                    try Self.catchUp(search, history: history, journal: journal, from: searchStart, to: target, readBytesMax: readBytesMax,
                                     historyReached: { historyReached.load(ordering: .acquiring) }) { next in
                        searched.store(next.value - searchStart.value, ordering: .relaxed)
                    }
                } catch {
                    searchFailure.withLock { $0 = error }
                }
            }
        }
        var next = historyStart
        do {
            while let history, next < target {
                let batches = try reader.read(from: next, maxBytes: catchUpReadBytesMax).filter { $0.baseOffset < target }
                guard let end = batches.last?.nextOffset else {
                    throw ProjectionError.invalidQuery("the journal ended at \(next) before \(target)")
                }
                try history.apply(batches, deferTails: true)
                next = end
                historyReached.store(next.value, ordering: .releasing)
                progress?(roomStateWork + next.value - historyStart.value + searched.load(ordering: .relaxed), total)
            }
            try history?.writeDeferredTails()
            historyReached.store(.max, ordering: .releasing)
        } catch {
            historyReached.store(.max, ordering: .releasing)
            group.wait()
            throw error
        }
        group.wait()
        if let error = searchFailure.withLock({ $0 }) { throw error }
        if let search, let history, seeding {
            logger.notice("the journal or History no longer holds what the search index needs: indexing History's messages",
                          metadata: ["search.next_offset": "\(searchStart)", "journal.earliest_offset": "\(journal.earliestOffset)"])
            try search.seed(from: history)
            try Self.catchUp(search, history: history, journal: journal, from: try search.nextOffset(), to: target,
                             readBytesMax: catchUpReadBytesMax, historyReached: { .max }) { _ in }
        }
        progress?(total, total)
        try saveSnapshot()
        // What the index has applied, History need not keep for it.
        if let search, let history { try history.pruneReplaced(below: try search.nextOffset()) }
        try history?.eraseDeletedText()
        try search?.eraseDeletedText()
    }

    /// Brings `search` from `start` to `target`, one transaction per read, each once History has
    /// applied it (`historyReached`, polled every millisecond).
    private static func catchUp(_ search: SearchProjection, history: HistoryProjection, journal: Journal, from start: Offset,
                                to target: Offset, readBytesMax: Int, historyReached: () -> UInt64,
                                progress: (Offset) -> Void) throws {
        var reader = journal.makeReader()
        var next = start
        while next < target {
            let batches = try reader.read(from: next, maxBytes: readBytesMax).filter { $0.baseOffset < target }
            guard let end = batches.last?.nextOffset else {
                throw ProjectionError.invalidQuery("the journal ended at \(next) before \(target)")
            }
            while historyReached() < end.value { usleep(1000) }
            try search.apply(batches, history: history)
            next = end
            progress(next)
        }
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
