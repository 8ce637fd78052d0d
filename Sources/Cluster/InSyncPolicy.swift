/// Rule 4 of docs/CLUSTER.md as a pure function of the leader's view of its standbys: how the
/// in-sync set should change. The server's `InSyncKeeper` applies it (rule 3, what may commit,
/// is `ReplicationLeader`'s commit point in cluster mode).
public struct InSyncPolicy: Sendable, Equatable {
    /// What the leader knows of one standby.
    public struct Progress: Sendable, Equatable {
        /// The journal offset below which the standby has everything durable.
        public var durable: UInt64
        /// The last time its durable offset reached the leader's journal end.
        public var caughtUpAt: ContinuousClock.Instant
        /// Whether its latest fetch caught up: claimed at least the leader's end when its
        /// previous fetch began (Kafka's test, which a standby under a steady stream of writes
        /// passes although it is never exactly at the end).
        public var caughtUp: Bool

        public init(durable: UInt64, caughtUpAt: ContinuousClock.Instant, caughtUp: Bool = false) {
            self.durable = durable
            self.caughtUpAt = caughtUpAt
            self.caughtUp = caughtUp
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

    /// Rule 4: the set the leader should write, or nil to leave it as it is. A standby joins
    /// once it holds everything the leader has, or caught up at its latest fetch (the leader
    /// then admits it before writing the set and writes it only once it holds everything
    /// committed: `ReplicationLeader.admit`); a member leaves when it has not caught up for
    /// `lagTimeout` (until etcd has the smaller set, the leader still waits for it), or at once
    /// when it is behind and `gone` (no longer registered in etcd: its process stopped, as
    /// Kafka's controller drops a dead broker from the set). A member the leader has not heard
    /// from counts as caught up when leadership began (`leadingSince`). The leader is always a
    /// member.
    public func next(members: [String], leader: String, leaderEnd: UInt64, standbys: [String: Progress],
                     leadingSince: ContinuousClock.Instant, now: ContinuousClock.Instant,
                     gone: Set<String> = []) -> [String]? {
        var next = Set(members)
        next.insert(leader)
        for name in Set(members).union(standbys.keys) where name != leader {
            let progress = standbys[name] ?? Progress(durable: 0, caughtUpAt: leadingSince)
            if progress.durable >= leaderEnd || (progress.caughtUp && !gone.contains(name)) {
                next.insert(name)
            } else if progress.caughtUpAt.duration(to: now) > lagTimeout || gone.contains(name) {
                next.remove(name)
            }
        }
        let sorted = next.sorted()
        return sorted == members.sorted() ? nil : sorted
    }
}
