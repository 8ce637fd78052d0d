import ChatModel
import HummingbirdSocketIO
import Journal
import Logging
import ServiceLifecycle

/// Steps 5 to 8 of a command's path (decide → append → **commit → tail → apply →
/// broadcast**): the only source of broadcasts.
///
/// It follows the committed journal (`CommittedTail`), applies each read's events to the
/// committed room state, fans each event out to the sockets in its room, and wakes the
/// commands waiting for those offsets, whose acks then go out (`LiveRooms.apply`). So every
/// socket of a room gets the room's events in journal order, and nothing before it is
/// durable. History and the search index follow the journal beside it (`ProjectionWriter`s). A storage failure or a
/// record that does not decode ends it: the server fail-stops (`ChatService.failStop`).
///
/// Not thread-safe; a `Service` whose `run` owns its tail.
final class Tailer: Service {
    let service: ChatService
    /// What counts as committed (with synchronous replicas, durable on the standbys too).
    let commit: CommitPoint
    let socketIO: SocketIOServer
    /// On a standby: the decider follows what is applied (`Decider.follow`).
    let followsLeader: Bool

    init(service: ChatService, commit: CommitPoint, socketIO: SocketIOServer, followsLeader: Bool) {
        self.service = service
        self.commit = commit
        self.socketIO = socketIO
        self.followsLeader = followsLeader
    }

    func run() async throws {
        // The drain has let every command in flight commit and be applied by now.
        try await cancelWhenGracefulShutdown { try await self.follow() }
    }

    private func follow() async throws {
        var tail = CommittedTail(commit: commit, from: service.live.position, readBytesMax: service.limits.readBytesMax)
        do {
            // Ends when the journal closes (after the server drained its commands) or fails.
            while true {
                let start = tail.next
                guard let batches = try await tail.nextBatches() else { break }
                let events = try CommittedTail.events(in: batches, from: start)
                if followsLeader { service.decider.follow(events, end: tail.next) }
                service.live.apply(events, end: tail.next, server: socketIO)
            }
        } catch is CancellationError {
            // The server is stopping: what was committed has been applied.
        } catch {
            // Nothing more is decided or applied, and the server stays up to say so (`/healthz`
            // 503, `unavailable` to every command) until it is stopped.
            service.failStop("the tailer stopped: \(error)", at: tail.next, server: socketIO)
            try? await gracefulShutdown()
            return
        }
        service.live.fail("the server is stopping", server: socketIO)
    }
}
