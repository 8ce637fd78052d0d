import Cluster
import Journal
import Logging
import Replication
import ServiceLifecycle

/// Cluster mode, on the leader: keeps the in-sync set in etcd (docs/CLUSTER.md, rule 4) from
/// what the leader learns of its standbys' fetches, in the order that keeps rule 3 safe:
///
/// - a standby that caught up is first admitted by the leader (commits wait for it from then
///   on), and written to etcd only once it holds everything committed before that;
/// - a member is removed from etcd first (a compare-and-set on this leader's epoch: a replaced
///   leader cannot change who may lead after it), and only then does the leader stop waiting
///   for it.
///
/// A member leaves when it has not caught up for `--replica-lag-timeout`, or at once when it
/// is behind and no longer registered in etcd (its process stopped). etcd is written only
/// when the set changes: it is off the path of every command.
final class InSyncKeeper: Service {
    let leader: ReplicationLeader
    let node: ClusterNode
    let policy: InSyncPolicy
    let logger: Logger
    /// How often the leader's view of its standbys is checked against the set.
    static let interval: Duration = .milliseconds(100)
    /// How often the registered nodes are read while a member is behind.
    static let nodesInterval: Duration = .milliseconds(500)

    init(leader: ReplicationLeader, node: ClusterNode, syncReplicas: Int, lagTimeout: Duration, logger: Logger) {
        self.leader = leader
        self.node = node
        policy = InSyncPolicy(syncReplicas: syncReplicas, lagTimeout: lagTimeout)
        self.logger = logger
    }

    var coordinator: ClusterCoordinator { node.coordinator }

    /// The set as etcd holds it under this node's epoch, and since when this node leads.
    private struct Leading {
        var epoch: UInt32
        var members: [String]
        var since: ContinuousClock.Instant
        var gone: Set<String> = []
        var nodesReadAt: ContinuousClock.Instant?
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var leading: Leading?
            while !Task.isCancelled {
                try await Task.sleep(for: Self.interval)
                guard self.leader.role == .leading, case .leader(let epoch) = self.node.role else {
                    leading = nil
                    continue
                }
                do {
                    if leading?.epoch != epoch {
                        guard let members = self.leader.inSyncMembers else { continue }
                        leading = Leading(epoch: epoch, members: (members.union([self.coordinator.node])).sorted(), since: .now)
                    }
                    if var current = leading {
                        try await self.step(&current)
                        leading = current
                    }
                } catch {
                    self.logger.warning("cluster: cannot update the in-sync set in etcd; trying again", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// One check: compute the set the policy wants and move etcd and the leader to it.
    private func step(_ leading: inout Leading) async throws {
        let me = coordinator.node
        let progress = leader.standbyProgress()
        let committed = leader.commitPoint.value
        let now = ContinuousClock.now
        var standbys: [String: InSyncPolicy.Progress] = [:]
        for (name, standby) in progress {
            standbys[name] = .init(durable: standby.durable.value, caughtUpAt: standby.lastCaughtUp ?? leading.since,
                                   caughtUp: standby.caughtUp)
        }
        // Who stopped: read only while some member is behind, and not on every check.
        let behind = leading.members.contains { $0 != me && (standbys[$0]?.durable ?? 0) < committed && standbys[$0]?.caughtUp != true }
        if behind, leading.nodesReadAt.map({ $0.duration(to: now) >= Self.nodesInterval }) ?? true {
            let registered = Set(try await coordinator.nodes().map(\.name))
            leading.gone = Set(leading.members).subtracting(registered).subtracting([me])
            leading.nodesReadAt = now
        }
        guard var next = policy.next(members: leading.members, leader: me, leaderEnd: committed, standbys: standbys,
                                     leadingSince: leading.since, now: now, gone: leading.gone) else { return }
        let added = Set(next).subtracting(leading.members)
        let removed = Set(leading.members).subtracting(next)
        // Admit first; write only those that then hold everything committed before.
        for name in added {
            let needed = leader.admit(name)
            if await reaches(name, needed) { continue }
            leader.dismiss(name)
            next.removeAll { $0 == name }
        }
        guard Set(next) != Set(leading.members) else { return }
        guard try await coordinator.setInSyncSet(next, epoch: leading.epoch) else {
            // A newer epoch is in etcd: this node no longer leads (etcd's watch says so too).
            leader.fence(newerEpoch: leading.epoch &+ 1, reason: "a newer leader epoch is in etcd")
            return
        }
        leading.members = next.sorted()
        for name in removed { leader.dismiss(name) }
        logger.notice("cluster: in-sync set changed", metadata: [
            "cluster.in_sync": "\(leading.members.joined(separator: ","))", "replication.epoch": "\(leading.epoch)",
            "cluster.joined": "\(added.intersection(next).sorted().joined(separator: ","))",
            "cluster.left": "\(removed.sorted().joined(separator: ","))",
        ])
    }

    /// How long an admitted standby may take to hold everything committed before it is written
    /// to etcd (it caught up at its latest fetch: normally one more fetch); commits wait for it
    /// meanwhile.
    static let admissionWait: Duration = .seconds(2)

    /// Whether `name`'s durable end reaches `offset` within `admissionWait`.
    private func reaches(_ name: String, _ offset: Offset) async -> Bool {
        let deadline = ContinuousClock.now + Self.admissionWait
        while ContinuousClock.now < deadline, !Task.isCancelled {
            if let durable = leader.standbyProgress()[name]?.durable, durable >= offset { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
