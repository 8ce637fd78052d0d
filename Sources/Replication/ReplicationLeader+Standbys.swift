import Journal
import Logging

/// What the leader learns of each standby from its fetches: how far it has durable (which
/// moves the replicated offset), when it last fetched, and the status built from them.
extension ReplicationLeader {
    /// A fetch of `name` began, claiming everything below `durable` is durable there: records
    /// it, and wakes the waits for replication that this claim satisfies.
    func began(_ name: String, durable: Offset) {
        let committed = journal.committedOffset
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            let now = ContinuousClock.now
            // A claim past this leader's end (refused as offset_ahead) counts for nothing.
            let claimed = min(durable, committed)
            var standby = state.standbys[name] ?? Standby(durable: claimed, lastFetch: now)
            if standby.fetchesInFlight == 0 && state.standbys[name] == nil {
                logger.notice("standby connected", metadata: ["replication.standby": "\(name)", "journal.offset": "\(durable)"])
            }
            standby.durable = claimed
            standby.lastFetch = now
            standby.fetchesInFlight += 1
            standby.caughtUp = durable >= min(committed, standby.endAtPreviousFetch ?? committed)
            if durable >= committed || standby.caughtUp { standby.lastCaughtUp = now }
            standby.endAtPreviousFetch = committed
            state.standbys[name] = standby
            return Self.advance(&state, syncReplicas: syncReplicas)
        }
        for waiter in ready { waiter.resume() }
    }

    /// Moves the replicated offset to what the standbys' durable ends allow and returns the
    /// waits that this satisfies (in cluster mode, all of them once the leader commits alone).
    static func advance(_ state: inout State, syncReplicas: Int) -> [CheckedContinuation<Void, Never>] {
        let replicated = Self.replicated(state, syncReplicas: syncReplicas)
        let moved = replicated > state.replicated
        if moved { state.replicated = replicated }
        let end = replicatedEnd(state, syncReplicas: syncReplicas)
        guard moved || end == Offset(UInt64.max) else { return [] }
        var ready: [CheckedContinuation<Void, Never>] = []
        for (id, waiter) in state.replicationWaiters where waiter.offset < end {
            ready.append(waiter.continuation)
            state.replicationWaiters[id] = nil
        }
        return ready
    }

    /// A fetch of `name` ended (answered or abandoned).
    func ended(_ name: String) {
        state.withLock { state in
            state.standbys[name]?.fetchesInFlight -= 1
            state.standbys[name]?.lastFetch = .now
        }
    }

    /// A standby counts as connected while a fetch of its is held, or within this long of its
    /// last one.
    public static let connectedWithin: Duration = .seconds(5)

    /// What the leader knows of its standbys, for `GET /api/replication`.
    public func status() -> ReplicationStatus {
        let committed = journal.committedOffset
        let now = ContinuousClock.now
        let standbys = state.withLock { state in
            state.standbys.map { name, standby in
                ReplicationStatus.Standby(
                    name: name,
                    connected: standby.fetchesInFlight > 0 || now - standby.lastFetch < Self.connectedWithin,
                    durableOffset: standby.durable.value,
                    lagEvents: committed.value > standby.durable.value ? committed.value - standby.durable.value : 0,
                    lagBytes: journal.bytes(after: standby.durable),
                    lagSeconds: standby.durable >= committed ? 0 : standby.lastCaughtUp.map { (now - $0).inSeconds },
                    lastFetchSecondsAgo: (now - standby.lastFetch).inSeconds)
            }.sorted { $0.name < $1.name }
        }
        var status = ReplicationStatus(role: role.name, epoch: epoch, committedOffset: committed.value, leader: nil, standbys: standbys)
        if syncReplicas > 0 {
            status.syncReplicas = syncReplicas
            status.replicatedOffset = replicatedOffset.value
        }
        return status
    }
}
