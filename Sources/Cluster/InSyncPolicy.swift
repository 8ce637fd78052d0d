/// Rules 3 and 4 of docs/CLUSTER.md as pure functions of the leader's view of its standbys:
/// what may commit, and how the in-sync set should change. The leader writes a changed set
/// with `ClusterCoordinator.setInSyncSet` and counts only the set etcd holds.
public struct InSyncPolicy: Sendable, Equatable {
    /// What the leader knows of one standby.
    public struct Progress: Sendable, Equatable {
        /// The journal offset below which the standby has everything durable.
        public var durable: UInt64
        /// The last time its durable offset reached the leader's journal end.
        public var caughtUpAt: ContinuousClock.Instant

        public init(durable: UInt64, caughtUpAt: ContinuousClock.Instant) {
            self.durable = durable
            self.caughtUpAt = caughtUpAt
        }
    }

    /// How many members besides the leader the set must have for anything to commit.
    public var syncReplicas: Int
    /// A member that has not caught up for this long leaves the set (Kafka's
    /// `replica.lag.time.max.ms`).
    public var lagTimeout: Duration

    public init(syncReplicas: Int, lagTimeout: Duration) {
        self.syncReplicas = syncReplicas
        self.lagTimeout = lagTimeout
    }

    /// Rule 3: everything below the returned offset may commit: every member of `members` other
    /// than `leader` has it durable, and there are at least `syncReplicas` of them. nil: the set
    /// is too small, nothing more may commit until it grows.
    public func committable(members: [String], leader: String, leaderEnd: UInt64, standbys: [String: Progress]) -> UInt64? {
        let others = members.filter { $0 != leader }
        guard others.count >= syncReplicas else { return nil }
        return others.reduce(leaderEnd) { lowest, name in min(lowest, standbys[name]?.durable ?? 0) }
    }

    /// Rule 4: the set the leader should write, or nil to leave it as it is. A standby joins
    /// once it holds everything the leader has (so it holds everything committed); a member
    /// leaves when it has not caught up for `lagTimeout` (until etcd has the smaller set, the
    /// leader still waits for it). A member the leader has not heard from counts as caught up
    /// when leadership began (`leadingSince`). The leader is always a member.
    public func next(members: [String], leader: String, leaderEnd: UInt64, standbys: [String: Progress],
                     leadingSince: ContinuousClock.Instant, now: ContinuousClock.Instant) -> [String]? {
        var next = Set(members)
        next.insert(leader)
        for name in Set(members).union(standbys.keys) where name != leader {
            let progress = standbys[name] ?? Progress(durable: 0, caughtUpAt: leadingSince)
            if progress.durable >= leaderEnd {
                next.insert(name)
            } else if progress.caughtUpAt.duration(to: now) > lagTimeout {
                next.remove(name)
            }
        }
        let sorted = next.sorted()
        return sorted == members.sorted() ? nil : sorted
    }
}
