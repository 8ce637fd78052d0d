import Journal
import Logging
import NIOPosix
import Projections
import ServiceLifecycle

/// Writes the room-state snapshot every `interval` while the state moves, then lets the
/// journal's retention delete the segments the projections have made durable: those wholly
/// below the snapshot's offset, History's checkpoint and Search's position (unless Search has
/// failed: it then starts again from History's messages, and must not hold the journal back).
///
/// The room state lives in memory and is rebuilt from the snapshot and the journal after it;
/// once retention deletes events, nothing else holds them. Before this, the snapshot was
/// written only at start-up and at a clean stop, and retention deleted by size alone: a server
/// killed (kill -9, a power cut) after retention had passed its last snapshot could not start
/// again ("the projections need offset 0 but the journal retains only from …").
final class SnapshotKeeper: Service {
    let live: LiveRooms
    let history: HistoryProjection
    let search: ProjectionWriter
    let journal: Journal
    let path: String
    let interval: Duration
    let logger: Logger

    init(live: LiveRooms, history: HistoryProjection, search: ProjectionWriter, journal: Journal, path: String, interval: Duration,
         logger: Logger) {
        self.search = search
        self.live = live
        self.history = history
        self.journal = journal
        self.path = path
        self.interval = interval
        self.logger = logger
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var saved: Offset?
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval)
                let (state, position) = self.live.snapshot()
                guard position != saved else { continue }
                do {
                    // Encoding and fsync block: off the concurrency pool.
                    try await NIOThreadPool.singleton.runIfActive {
                        var projection = RoomStateProjection(state: state, nextOffset: position, snapshotPath: self.path)
                        try projection.saveSnapshot()
                    }
                    saved = position
                    var floor = min(position, try self.history.nextOffset())
                    if self.search.failure == nil { floor = min(floor, self.search.position) }
                    try self.journal.raiseRetentionFloor(to: floor)
                } catch {
                    // Retention waits (the journal keeps more); the next round tries again.
                    self.logger.error("room-state snapshot not written; retention waits for the next one",
                                      metadata: ["journal.offset": "\(position)", "error": "\(error)"])
                }
            }
        }
    }
}
