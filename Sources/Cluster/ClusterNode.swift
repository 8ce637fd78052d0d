import Etcd
import Logging
import Synchronization

/// What a node is in its cluster at a moment.
public enum ClusterRole: Sendable, Equatable, CustomStringConvertible {
    /// This node leads under `epoch`.
    case leader(epoch: UInt32)
    /// Another node leads: follow it.
    case follower(LeaderRecord)
    /// Nobody leads and this node may not (it is not in the in-sync set), or its lease was lost.
    case leaderless

    public var description: String {
        switch self {
        case .leader(let epoch): "leader of epoch \(epoch)"
        case .follower(let record): "standby of \(record.node) at \(record.url) (epoch \(record.epoch))"
        case .leaderless: "leaderless"
        }
    }
}

/// One node taking part in its cluster: it keeps a lease, registers under it, takes leadership
/// when nobody holds it and it may, and otherwise follows whoever leads, telling its owner
/// each time its role changes. It reacts to etcd's changes through a watch of the cluster's
/// keys, so a leader's end (its lease expiring or revoked) starts a campaign at once.
/// `chatlog serve --etcd` runs one (`ClusterServer`).
public final class ClusterNode: Sendable {
    public let coordinator: ClusterCoordinator
    public let leaseTTL: Int64
    /// The newest epoch in this node's journal, read at each campaign.
    let localEpoch: @Sendable () -> UInt32
    let logger: Logger
    let state = Mutex<(role: ClusterRole, keeper: LeaseKeeper?)>((.leaderless, nil))
    /// How long to wait before trying again after etcd did not answer.
    static let retryDelay: Duration = .milliseconds(200)

    /// How long a name held under another lease may be a crashed incarnation's: its TTL (the
    /// same `--lease-ttl`) and a second for etcd's expiry to run.
    static func staleNameWait(_ ttl: Int64) -> Duration { .seconds(ttl) + .seconds(1) }

    public init(coordinator: ClusterCoordinator, leaseTTL: Int64, localEpoch: @escaping @Sendable () -> UInt32, logger: Logger) {
        self.coordinator = coordinator
        self.leaseTTL = leaseTTL
        self.localEpoch = localEpoch
        self.logger = logger
    }

    public var role: ClusterRole { state.withLock { $0.role } }

    /// Gives up leadership now (a switchover: another node is to campaign). Nothing happens when
    /// this node does not lead.
    public func resign() async throws(ClusterError) {
        guard case .leader = role, let lease = state.withLock({ $0.keeper?.lease.id }) else { return }
        try await coordinator.resign(lease: lease)
    }

    /// How long this node's lease certainly still holds (nil: it holds none now).
    public var leaseTimeLeft: Duration? {
        state.withLock { state in state.keeper.map { max(.zero, ContinuousClock.now.duration(to: $0.validUntil)) } }
    }

    /// Whether this node may acknowledge now: it leads and its lease certainly still exists
    /// (`LeaseKeeper.isValid`, which reads the clock: a process resumed from a pause past its
    /// lease says no before anything else happens).
    public var mayAcknowledge: Bool {
        state.withLock { state in
            guard case .leader = state.role, let keeper = state.keeper else { return false }
            return keeper.isValid
        }
    }

    /// Takes part until cancelled, calling `onChange` with each new role, in order.
    /// - Throws: `.duplicateNode` when another running node has this node's name (held under
    ///   another lease for longer than the TTL and a second: a name left by this node's own
    ///   crashed incarnation goes within that time, and the node then starts),
    ///   `.leaseTTLBelowMinimum` for a TTL etcd would lengthen; etcd failures are retried (a
    ///   lease lost is replaced by a new one).
    public func run(_ onChange: @escaping @Sendable (ClusterRole) async -> Void) async throws(ClusterError) {
        // Since when this node's name has been held under another lease.
        var nameHeldSince: ContinuousClock.Instant?
        while !Task.isCancelled {
            let keeper: LeaseKeeper
            do {
                keeper = try await LeaseKeeper(etcd: coordinator.etcd, ttl: leaseTTL)
            } catch where error.isPermanent {
                throw error
            } catch {
                logger.warning("cluster: cannot take a lease in etcd; retrying", metadata: ["error": "\(error)"])
                do { try await Task.sleep(for: Self.retryDelay) } catch { return }
                continue
            }
            do {
                try await coordinator.register(lease: keeper.lease.id)
                nameHeldSince = nil
            } catch {
                try? await keeper.revoke()
                if case .duplicateNode = error {
                    // This node restarted after a crash: its old incarnation's keys go within
                    // their lease's TTL. A running node with the name keeps them longer.
                    let since = nameHeldSince ?? .now
                    nameHeldSince = since
                    guard since.duration(to: .now) <= Self.staleNameWait(leaseTTL) else { throw error }
                    logger.notice("cluster: this node's name is held under another lease; waiting for it to expire",
                                  metadata: ["cluster.node": "\(coordinator.node)"])
                } else if error.isPermanent {
                    throw error
                } else {
                    logger.warning("cluster: cannot register in etcd; retrying", metadata: ["error": "\(error)"])
                }
                do { try await Task.sleep(for: Self.retryDelay) } catch { return }
                continue
            }
            state.withLock { $0.keeper = keeper }
            do {
                try await withThrowingTaskGroup { group in
                    group.addTask { try await keeper.run() }
                    group.addTask { try await self.follow(keeper, onChange) }
                    // Either ends only by an error (the lease lost) or by cancellation.
                    _ = try await group.next()
                    group.cancelAll()
                }
            } catch {
                logger.warning("cluster: lease lost or cluster state unreadable; starting over",
                               metadata: ["error": "\(error)", "etcd.lease": "\(keeper.lease.id)"])
                try? await Task.sleep(for: Self.retryDelay)
            }
            state.withLock { $0.keeper = nil }
            await publish(.leaderless, onChange)
            if Task.isCancelled {
                // A clean stop hands leadership over at once instead of after the lease's TTL
                // (in a task of its own: this one is cancelled, and so would be the request).
                await Task { try? await keeper.revoke() }.value
            }
        }
    }

    /// Reads who leads, campaigns when nobody does, publishes the role, and waits for the next
    /// change under the cluster's prefix; forever (until cancelled or an error).
    func follow(_ keeper: LeaseKeeper, _ onChange: @escaping @Sendable (ClusterRole) async -> Void) async throws {
        let etcd = coordinator.etcd
        let keys = coordinator.keys
        while !Task.isCancelled {
            do {
                let read = try await etcd.list(prefix: keys.leader)
                let role: ClusterRole
                if let current = read.values.first(where: { $0.key == keys.leader }) {
                    let record = try ClusterJSON.decode(LeaderRecord.self, current.value, key: current.key)
                    role = record.node == coordinator.node && current.lease == keeper.lease.id ? .leader(epoch: record.epoch) : .follower(record)
                } else {
                    switch try await coordinator.campaign(lease: keeper.lease.id, localEpoch: localEpoch()) {
                    case .won(let epoch): role = .leader(epoch: epoch)
                    case .led(let record?): role = .follower(record)
                    case .led(nil): continue  // the epoch or the set moved meanwhile: read again
                    case .ineligible, .heldBack: role = .leaderless
                    }
                }
                await publish(role, onChange)
                // Wait for any change to the cluster's keys after what was read.
                try await etcd.watch(prefix: keys.prefix, from: read.revision + 1) { _, _ in false }
            } catch {
                switch Self.etcdFailure(error) {
                case let failure? where failure.isTransient: try await Task.sleep(for: Self.retryDelay)
                case .compacted?: continue  // read again, then watch from there
                default: throw error
                }
            }
        }
    }

    static func etcdFailure(_ error: any Error) -> EtcdError? {
        if let error = error as? EtcdError { return error }
        if case .etcd(let error)? = error as? ClusterError { return error }
        return nil
    }

    func publish(_ role: ClusterRole, _ onChange: @Sendable (ClusterRole) async -> Void) async {
        let changed = state.withLock { state in
            defer { state.role = role }
            return state.role != role
        }
        guard changed else { return }
        logger.notice("cluster: role changed", metadata: ["cluster.role": "\(role)"])
        await onChange(role)
    }
}
