import ChatModel
import HummingbirdSocketIO
import Journal
import Logging
import Projections
import ServiceLifecycle

/// Steps 5 to 8 of a command's path (decide → append → **commit → tail → apply →
/// broadcast**): the only source of broadcasts.
///
/// It waits for the journal to commit past its position, reads the committed batches, applies
/// their events to the committed room state, fans each event out to the sockets in its room,
/// and wakes the commands waiting for those offsets, whose acks then go out. So every socket
/// of a room gets the room's events in journal order, and nothing before it is durable.
/// History follows the journal beside it (`HistoryWriter`): no SQLite transaction on this
/// path. A storage failure ends it: waiting commands are refused as `unavailable`, and the
/// server reports unhealthy.
///
/// Not thread-safe; a `Service` whose `run` owns its reader.
final class Tailer: Service {
    let journal: Journal
    /// What counts as committed (with synchronous replicas, durable on the standbys too).
    let commit: CommitPoint
    let live: LiveRooms
    let decider: Decider
    let socketIO: SocketIOServer
    let recovery: Bool
    /// On a standby: the decider follows what is applied (`Decider.follow`).
    let followsLeader: Bool
    let readBytesMax: Int
    let logger: Logger

    init(journal: Journal, commit: CommitPoint, live: LiveRooms, decider: Decider, socketIO: SocketIOServer,
         recovery: Bool, followsLeader: Bool, readBytesMax: Int, logger: Logger) {
        self.journal = journal
        self.commit = commit
        self.live = live
        self.decider = decider
        self.socketIO = socketIO
        self.recovery = recovery
        self.followsLeader = followsLeader
        self.readBytesMax = readBytesMax
        self.logger = logger
    }

    func run() async throws {
        // The drain has let every command in flight commit and be applied by now.
        try await cancelWhenGracefulShutdown { try await self.follow() }
    }

    private func follow() async throws {
        var reader = journal.makeReader()
        var next = live.position
        do {
            // Ends when the journal closes (after the server drained its commands) or fails.
            while try await commit.wait(for: next) {
                let batches = commit.committed(try reader.read(from: next, maxBytes: readBytesMax))
                guard let end = batches.last?.nextOffset else { continue }
                var events: [(Offset, ChatEvent)] = []
                for batch in batches {
                    for record in batch.records where record.offset >= next {
                        switch try ChatEventCodec.decode(record.payload) {
                        case .event(let event): events.append((record.offset, event))
                        case .unknown: continue
                        }
                    }
                }
                if followsLeader { decider.follow(events, end: end) }
                let ready = live.apply(events, end: end, recovery: recovery, server: socketIO)
                for waiter in ready { waiter.resume(returning: .success(())) }
                next = end
            }
        } catch is CancellationError {
            // The server is stopping: what was committed has been applied.
        } catch {
            // Fail-stop: nothing more is decided or applied, and the server stays up to say so
            // (`/healthz` 503, `unavailable` to every command) until it is stopped; a restart
            // recovers from disk.
            let reason = "storage failed: \(error)"
            logger.critical("tailer stopped; refusing commands until a restart", metadata: ["journal.offset": "\(next)", "error": "\(error)"])
            decider.refuse(reason)
            for waiter in live.fail(reason, server: socketIO) { waiter.resume(returning: .failure(.unavailable(reason))) }
            try? await gracefulShutdown()
            return
        }
        for waiter in live.fail("the server is stopping", server: socketIO) { waiter.resume(returning: .failure(.unavailable("the server is stopping"))) }
    }
}
