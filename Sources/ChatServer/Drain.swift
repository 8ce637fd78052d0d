import HummingbirdSocketIO
import Logging
import Replication
import ServiceLifecycle

/// The first service to stop: refuses new connections and commands, waits for the commands
/// in flight to commit and be answered, then closes every client's Engine.IO session (not a
/// Socket.IO DISCONNECT, after which the official client would not reconnect), so that the
/// HTTP server finds no connection left to wait for and clients come back by themselves.
final class Drain: Service {
    let socketIO: SocketIOServer
    let decider: Decider
    let live: LiveRooms
    let replication: ReplicationLeader?
    let logger: Logger
    /// How long in-flight commands may take to commit before clients are disconnected anyway.
    static let commitWait: Duration = .seconds(5)

    init(socketIO: SocketIOServer, decider: Decider, live: LiveRooms, replication: ReplicationLeader?, logger: Logger) {
        self.socketIO = socketIO
        self.decider = decider
        self.live = live
        self.replication = replication
        self.logger = logger
    }

    func run() async throws {
        try? await gracefulShutdown()
        logger.notice("shutting down: refusing new connections and commands")
        socketIO.stopAccepting()
        decider.refuse("the server is stopping")
        // Standbys' fetches held for new batches end now (they reconnect to whoever leads next).
        replication?.stop()
        let pending = decider.nextOffset
        let deadline = ContinuousClock.now.advanced(by: Self.commitWait)
        while live.position < pending, live.failure == nil, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        // What has not committed by now (synchronous replicas that do not answer) is answered
        // before the clients go: it is in the journal and may commit later.
        if live.position < pending {
            live.failWaiting("the server stopped before this command committed; it may still commit: resend with the same client_id to learn its id",
                             server: socketIO)
        }
        // The acks of the last commands go out from their connections' writers once woken.
        try? await Task.sleep(for: .milliseconds(50))
        let sessions = socketIO.sessionCount
        await socketIO.closeAll()
        logger.notice("clients disconnected", metadata: ["socketio.sessions": "\(sessions)", "journal.offset": "\(live.position)"])
    }
}
