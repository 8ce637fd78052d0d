import Cluster
import Logging
import Replication
import ServiceLifecycle
import Synchronization

/// One run of the serving stack in cluster mode, in the role it started in (`ClusterServer`).
/// The stack registers its service group, promotion and replication leader once built; a role
/// change from etcd then either leaves it alone, makes it follow a new leader or lead in
/// place, or shuts it down for the driver to start the next one.
final class ClusterStack: Sendable {
    let node: ClusterNode
    let startRole: ClusterRole
    /// On a leader: the in-sync set's other members when its leadership began.
    let inSync: Set<String>
    let logger: Logger

    private struct Parts {
        var role: ClusterRole
        var group: ServiceGroup?
        var promotion: Promotion?
        var leader: ReplicationLeader?
        /// Why the stack must stop (set before or after the group exists).
        var restart: String?
    }
    private let parts: Mutex<Parts>

    init(node: ClusterNode, startRole: ClusterRole, inSync: Set<String>, logger: Logger) {
        self.node = node
        self.startRole = startRole
        self.inSync = inSync
        self.logger = logger
        parts = Mutex(Parts(role: startRole))
    }

    var coordinator: ClusterCoordinator { node.coordinator }

    /// The role the stack serves in now (it may have taken over in place since it started).
    var role: ClusterRole { parts.withLock { $0.role } }

    /// The in-sync set's members in etcd other than this node.
    static func otherMembers(_ coordinator: ClusterCoordinator) async throws -> Set<String> {
        Set(try await coordinator.inSyncSet()?.set.members ?? []).subtracting([coordinator.node])
    }

    /// This node in its cluster, for `GET /api/replication`.
    func status(cluster name: String, leader: ReplicationLeader) -> ReplicationStatus.Cluster {
        let role = node.role
        var status = ReplicationStatus.Cluster(name: name, node: coordinator.node, role: "leaderless")
        switch role {
        case .leader(let epoch):
            status.role = "leader"
            status.leader = coordinator.node
            status.leaderEpoch = epoch
            status.inSync = leader.inSyncMembers.map { $0.union([coordinator.node]).sorted() }
        case .follower(let record):
            status.role = "standby"
            status.leader = record.node
            status.leaderEpoch = record.epoch
        case .leaderless:
            break
        }
        status.leaseSecondsLeft = node.leaseTimeLeft.map(\.inSeconds)
        return status
    }

    /// The stack is built: role changes can reach its parts. A restart asked for before this
    /// happens now.
    func attach(group: ServiceGroup, promotion: Promotion, leader: ReplicationLeader) async {
        let pending = parts.withLock { parts in
            parts.group = group
            parts.promotion = promotion
            parts.leader = leader
            return parts.restart != nil
        }
        if pending { await group.triggerGracefulShutdown() }
    }

    /// Shuts the stack down (the driver then starts the next one, unless stopping).
    func restart(_ reason: String) async {
        let group = parts.withLock { parts -> ServiceGroup? in
            guard parts.restart == nil else { return nil }
            parts.restart = reason
            return parts.group
        }
        guard let group else { return }
        logger.notice("cluster: shutting the serving stack down", metadata: ["cluster.reason": "\(reason)"])
        await group.triggerGracefulShutdown()
    }

    /// Etcd gave this node `role`.
    func roleChanged(_ role: ClusterRole) async {
        let (current, leader, promotion) = parts.withLock { ($0.role, $0.leader, $0.promotion) }
        switch (current, role) {
        case (.leader(let epoch), .leader(let now)) where epoch == now:
            return
        case (.leader(let epoch), _):
            // This node no longer leads: nothing more commits here (commands waiting are
            // answered at once), then the stack restarts as a standby and cuts what the new
            // leader lacks.
            let newer = if case .follower(let record) = role { max(record.epoch, epoch &+ 1) } else { epoch &+ 1 }
            leader?.fence(newerEpoch: newer, reason: "etcd: this node's leadership of epoch \(epoch) ended")
            await restart("this node's leadership of epoch \(epoch) ended")
        case (.follower(let was), .follower(let now)) where was.node == now.node && was.url == now.url:
            return
        case (.follower, .leaderless):
            // Keep serving reads and retrying the old leader until etcd names a new one.
            return
        case (.follower, .follower(let now)):
            // Follow the new leader in place; if this journal holds what it never had, its
            // first fetch says so and the stack restarts to cut it (`onDiverged`).
            guard let promotion, let follower = promotion.follower else { return await restart("\(now.node) leads now, at \(now.url)") }
            parts.withLock { $0.role = role }
            logger.notice("cluster: following the new leader", metadata: ["cluster.leader": "\(now.node)", "replication.leader": "\(now.url)"])
            promotion.decider.followLeader(now.url)
            promotion.leader.follow(now.url)
            follower.repoint(to: now.url)
        case (.follower, .leader(let epoch)):
            await takeOver(epoch: epoch, promotion: promotion)
        case (.leaderless, _):
            await restart("role changed")
        }
    }

    /// A standby that etcd made leader takes over in place: its clients stay connected.
    private func takeOver(epoch: UInt32, promotion: Promotion?) async {
        guard let promotion else { return await restart("leader of epoch \(epoch) before the stack was built") }
        let inSync: Set<String>
        do {
            inSync = try await Self.otherMembers(coordinator)
        } catch {
            return await restart("cannot read the in-sync set: \(error)")
        }
        switch await promotion.takeOver(epoch: epoch, inSync: inSync) {
        case .success:
            parts.withLock { $0.role = .leader(epoch: epoch) }
        case .failure(let failure):
            logger.warning("cluster: could not take over in place; restarting as the leader", metadata: ["error": "\(failure.response.status)"])
            await restart("taking over in place failed")
        }
    }
}
