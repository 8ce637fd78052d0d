import HummingbirdSocketIO
import Replication
import ServiceLifecycle

/// With synchronous replicas: commands whose events are not durable on enough standbys within
/// `timeout` are answered `unavailable` (never acknowledged unreplicated); once this leader is
/// fenced, every waiting command is, at once: nothing more commits here.
final class ReplicationTimeouts: Service {
    let live: LiveRooms
    let socketIO: SocketIOServer
    let leader: ReplicationLeader
    let timeout: Duration
    let syncReplicas: Int
    /// Cluster mode: commits wait for the in-sync set's members.
    let inSyncSet: Bool
    /// How often waiting commands are checked.
    static let interval: Duration = .milliseconds(100)

    init(live: LiveRooms, socketIO: SocketIOServer, leader: ReplicationLeader, timeout: Duration, syncReplicas: Int,
         inSyncSet: Bool = false) {
        self.inSyncSet = inSyncSet
        self.live = live
        self.socketIO = socketIO
        self.leader = leader
        self.timeout = timeout
        self.syncReplicas = syncReplicas
    }

    func run() async throws {
        let standbys = inSyncSet ? "the in-sync set's members (and at least \(syncReplicas) of them)"
            : "\(syncReplicas) standby\(syncReplicas == 1 ? "" : "s")"
        let reason = "not durable on \(standbys) within \(timeout); it may still commit: resend with the same client_id to learn its id"
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: Self.interval)
                if case .fenced(let epoch) = self.leader.role {
                    let fenced = "this node was fenced by the leader of epoch \(epoch) before the command committed; send it to the new leader (with the same client_id)"
                    self.live.failWaiting(fenced, server: self.socketIO)
                    continue
                }
                self.live.failWaiting(reason, since: .now - self.timeout, server: self.socketIO)
            }
        }
    }
}
