import Cluster
import Foundation
import Hummingbird
import Journal
import Logging
import Replication
import Synchronization

/// Cluster mode: a graceful switchover, `chatlog promote --server TARGET` (docs/CLUSTER.md).
///
/// The target (a standby in the in-sync set) asks its leader to hand over
/// (`POST /replication/v1/handover?to=TARGET`). The leader announces the handover in etcd (only
/// the target may campaign until the announcement's short lease expires), stops taking
/// commands (they are answered `not_leader`; clients resend), waits until the target has
/// everything it appended durable, leaves the in-sync set (whose members hold everything it
/// committed) and gives up its leader key. The target, watching etcd,
/// campaigns at once and takes over in place. If the target does not catch up in time, the
/// leader calls the handover off and takes commands again: nothing changes.
final class Switchover: Sendable {
    let stack: ClusterStack
    let journal: Journal
    let decider: Decider
    let leader: ReplicationLeader
    let follower: ReplicationFollower?
    let logger: Logger
    private let busy = Mutex(false)
    /// How long the leader waits for the target to hold everything before it calls it off.
    static let catchUpWait: Duration = .seconds(5)
    /// How long the target waits to lead after the leader handed over.
    static let takeOverWait: Duration = .seconds(10)

    init(stack: ClusterStack, journal: Journal, decider: Decider, leader: ReplicationLeader, follower: ReplicationFollower?,
         logger: Logger) {
        self.stack = stack
        self.journal = journal
        self.decider = decider
        self.leader = leader
        self.follower = follower
        self.logger = logger
    }

    struct HandoverAnswer: Codable {
        var handedOverTo: String
        var epoch: UInt32
        var offset: UInt64
    }

    /// On the leader: `POST /replication/v1/handover?to=NAME`.
    func handover(_ request: Request) async -> Response {
        if let refusal = leader.refusal(of: request, leading: true) { return refusal }
        let me = stack.coordinator.node
        guard let target = request.uri.queryParameters.get("to").map({ String($0) }), target != me else {
            return ChatServer.error(.badRequest, "invalid_request", "to (the node to hand leadership to, not this one) is required")
        }
        guard case .leader(let epoch) = stack.role else {
            return ChatServer.error(.conflict, "not_leader", "this node does not lead")
        }
        guard leader.inSyncMembers?.contains(target) == true else {
            return ChatServer.error(.conflict, "not_in_sync",
                                    "\(target) is not in the in-sync set, so it may lack acknowledged events: let it catch up first (chatlog cluster status)")
        }
        guard busy.withLock({ busy in defer { busy = true }; return !busy }) else {
            return ChatServer.error(.conflict, "in_progress", "a switchover is under way")
        }
        defer { busy.withLock { $0 = false } }
        let lease: Int64
        do {
            guard let granted = try await stack.coordinator.announceHandover(to: target, epoch: epoch) else {
                return ChatServer.error(.conflict, "not_in_sync", "etcd's in-sync set or epoch moved: \(target) may not lead now")
            }
            lease = granted
        } catch {
            return ChatServer.error(.serviceUnavailable, "unavailable", "etcd: \(error)")
        }
        logger.notice("switchover: handing leadership over", metadata: ["cluster.target": "\(target)", "replication.epoch": "\(epoch)"])
        decider.followLeader("\(target) (leadership is moving there)")
        let end = decider.nextOffset
        let deadline = ContinuousClock.now + Self.catchUpWait
        while (leader.standbyProgress()[target]?.durable ?? .zero) < end, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let caughtUp = (leader.standbyProgress()[target]?.durable ?? .zero) >= end
        var failure = caughtUp ? nil : "\(target) did not hold everything this leader appended within \(Self.catchUpWait)"
        // This node leaves the in-sync set as it steps down: the members hold everything it
        // committed, so the next leader need not wait for this node's restart as a standby
        // (it joins again once caught up).
        let others = (leader.inSyncMembers ?? []).sorted()
        if caughtUp {
            do {
                if try await stack.coordinator.setInSyncSet(others, epoch: epoch) {
                    try await stack.node.resign()
                } else {
                    failure = "a newer epoch is in etcd"
                }
            } catch {
                failure = "etcd: \(error)"
            }
        }
        if let failure {
            _ = try? await stack.coordinator.setInSyncSet((others + [me]).sorted(), epoch: epoch)
            try? await stack.coordinator.etcd.revoke(lease)
            decider.lead()
            logger.warning("switchover called off; this node leads on", metadata: ["cluster.target": "\(target)", "error": "\(failure)"])
            return ChatServer.error(.serviceUnavailable, "unavailable", "switchover called off, nothing changed: \(failure)")
        }
        logger.notice("switchover: leader key given up", metadata: ["cluster.target": "\(target)", "journal.offset": "\(end)"])
        return ChatServer.json(HandoverAnswer(handedOverTo: target, epoch: epoch, offset: end.value))
    }

    /// On the target: `POST /api/promote` in cluster mode.
    func promote(_ request: Request) async -> Response {
        if let refusal = leader.refusal(of: request) { return refusal }
        if case .leader = stack.role { return ChatServer.error(.conflict, "not_standby", "this node already leads") }
        guard case .follower = stack.role, let follower else {
            return ChatServer.error(.conflict, "not_standby", "nobody leads that this node follows: nothing to hand over")
        }
        let me = stack.coordinator.node
        do {
            _ = try await follower.post("/replication/v1/handover?to=\(me)", json: Data("{}".utf8), timeout: .seconds(15))
        } catch ReplicationError.refused(let status, let code, let message, _) {
            return ChatServer.error(HTTPResponse.Status(code: status), code, "the leader refused: \(message)")
        } catch {
            return ChatServer.error(.serviceUnavailable, "unavailable", "the leader could not be asked to hand over: \(error)")
        }
        let deadline = ContinuousClock.now + Self.takeOverWait
        while ContinuousClock.now < deadline {
            if case .leader(let epoch) = stack.role {
                return ChatServer.json(Promotion.Answer(role: "leader", epoch: epoch, offset: journal.committedOffset.value,
                                                        oldLeaderFenced: true))
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return ChatServer.error(.serviceUnavailable, "unavailable",
                                "the leader handed over but this node did not take over within \(Self.takeOverWait): see chatlog cluster status")
    }
}
