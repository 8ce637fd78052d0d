import Journal

/// Cluster mode (docs/CLUSTER.md, rules 3 and 4): the leader commits an event once every other
/// member of the in-sync set has it durable, and there are at least `syncReplicas` of them.
/// The set lives in etcd; `InSyncKeeper` in the server decides its changes and calls these in
/// the order that keeps the rule safe: a member is added here *before* etcd has it (commits
/// wait for it at once) and removed here only *after* etcd no longer has it.
extension ReplicationLeader {
    /// What the leader knows of one standby, for the in-sync policy.
    public struct StandbyProgress: Sendable, Equatable {
        public var durable: Offset
        /// Its latest fetch claimed at least the leader's end when its previous fetch began.
        public var caughtUp: Bool
        /// When it last caught up (nil: never while this node led).
        public var lastCaughtUp: ContinuousClock.Instant?
    }

    /// Switches commits to the in-sync rule with `members` (the set's other members, as etcd
    /// holds it when this node's leadership began).
    public func useInSyncSet(_ members: Set<String>) {
        let ready = state.withLock { state in
            state.inSync = members
            return Self.advance(&state, syncReplicas: syncReplicas)
        }
        for waiter in ready { waiter.resume() }
    }

    /// The in-sync set's members besides this node that commits wait for (nil: not in cluster
    /// mode).
    public var inSyncMembers: Set<String>? { state.withLock { $0.inSync } }

    /// Makes commits wait for `name` from now on, before etcd is told. Returns the offset it
    /// must have durable before etcd may list it: everything committed so far. (Before this
    /// call, commits did not wait for it; after it, they do; so once its durable end reaches
    /// the returned offset it holds everything committed, and may lead.)
    public func admit(_ name: String) -> Offset {
        state.withLock { state in
            // What has committed until now: with no other member and no synchronous replica
            // asked for, everything the journal holds.
            let committed = Self.replicatedEnd(state, syncReplicas: syncReplicas) == Offset(UInt64.max)
                ? max(state.replicated, journal.committedOffset) : state.replicated
            state.replicated = committed
            state.inSync = (state.inSync ?? []).union([name])
            return committed
        }
    }

    /// Stops waiting for `name` (etcd no longer lists it, or it was admitted here but never
    /// written there): commits it held back may go on.
    public func dismiss(_ name: String) {
        let ready = state.withLock { state in
            state.inSync?.remove(name)
            return Self.advance(&state, syncReplicas: syncReplicas)
        }
        for waiter in ready { waiter.resume() }
    }

    /// Each standby's progress, by name.
    public func standbyProgress() -> [String: StandbyProgress] {
        state.withLock { state in
            state.standbys.mapValues { StandbyProgress(durable: $0.durable, caughtUp: $0.caughtUp, lastCaughtUp: $0.lastCaughtUp) }
        }
    }

    /// Cluster mode, on a standby: commits only what the leader says is committed, from
    /// `start` (what its journal held when it started, which the start-up applied) on.
    public func followCommitPoint(from start: Offset) {
        state.withLock { $0.leaderCommitPoint = start }
    }

    /// A fetch answer said the leader's commit point is `offset` (`followCommitPoint`).
    public func leaderCommitted(_ offset: Offset) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard case .following = state.role, let known = state.leaderCommitPoint, offset > known else { return [] }
            state.leaderCommitPoint = offset
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.replicationWaiters where waiter.offset < offset {
                ready.append(waiter.continuation)
                state.replicationWaiters[id] = nil
            }
            return ready
        }
        for waiter in ready { waiter.resume() }
    }

    /// The offset below which everything is committed here (for the in-sync policy).
    public var commitPoint: Offset {
        state.withLock { state in
            let end = Self.replicatedEnd(state, syncReplicas: syncReplicas)
            return end == Offset(UInt64.max) ? journal.committedOffset : min(end, journal.committedOffset)
        }
    }
}
