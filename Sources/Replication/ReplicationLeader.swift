import Foundation
import Hummingbird
import Journal
import Logging
import NIOCore
import Synchronization

/// A leader's side of replication: answers standbys' fetches (FORMAT.md §11) from its
/// journal, and keeps what it learns of each standby for `status()`.
///
/// A fetch reads whole committed batches (`Journal.readRaw`) and sends them as they are on
/// disk: no per-event work, so a far-behind standby catches up at the speed of large reads.
/// Thread-safe: the standbys' records sit behind one `Mutex`, held for bookkeeping only.
public final class ReplicationLeader: Sendable {
    let journal: Journal
    let secret: ReplicationSecret?
    /// Standbys that must have an event durable before it counts as committed (0: none).
    public let syncReplicas: Int
    let logger: Logger
    let state: Mutex<State>

    /// What this node is in replication.
    public enum Role: Sendable, Equatable {
        /// It answers standbys' fetches and takes commands.
        case leading
        /// A standby of the leader at this URL: no fetches answered.
        case following(String)
        /// It learnt of a newer leader epoch: it takes no more writes and answers no fetches.
        case fenced(epoch: UInt32)

        /// As status and health answers name it: `leader`, `standby` or `fenced`.
        public var name: String {
            switch self {
            case .leading: "leader"
            case .following: "standby"
            case .fenced: "fenced"
            }
        }
    }

    struct State {
        var role: Role
        /// With `syncReplicas`: everything below this is durable on that many standbys (or was
        /// committed before this server started). Always where a batch starts: a standby's
        /// durable end is.
        var replicated: Offset
        var replicationWaiters: [UInt64: (offset: Offset, continuation: CheckedContinuation<Void, Never>)] = [:]
        var standbys: [String: Standby] = [:]
        var nextWaiter: UInt64 = 0
        var stopped = false
        /// Cluster mode: the in-sync set's members besides this node. Every one must have an
        /// event durable before it commits (and there must be `syncReplicas` of them); nil: the
        /// count rule, any `syncReplicas` standbys.
        var inSync: Set<String>?
        /// Cluster mode, on a standby: the leader's commit point as its last fetch answer said.
        /// The standby commits (applies, broadcasts) only below it, so its readers never see an
        /// event that a failover could remove. nil: everything copied (outside a cluster).
        var leaderCommitPoint: Offset?
    }

    /// What the leader knows of one standby, from its fetches.
    struct Standby {
        var durable: Offset
        var fetchesInFlight = 0
        var lastFetch: ContinuousClock.Instant
        var lastCaughtUp: ContinuousClock.Instant?
        /// The leader's journal end when this standby's previous fetch began: a fetch that
        /// claims at least that has caught up (Kafka's definition, which a standby under a
        /// steady stream of writes meets although it is never exactly at the end).
        var endAtPreviousFetch: Offset?
        /// Whether its latest fetch caught up.
        var caughtUp = false
        /// The commit point the last answer to it carried.
        var toldCommitPoint: Offset = .zero
    }

    /// - Parameters:
    ///   - secret: nil refuses every standby (`replication_disabled`).
    ///   - syncReplicas: how many standbys must have an event durable before it is committed
    ///     (`waitForReplication`); what the journal held at start counts as committed.
    ///   - role: `.leading`, or `.following` on a standby (`promote` makes it lead).
    public init(journal: Journal, secret: ReplicationSecret?, role: Role = .leading, syncReplicas: Int = 0,
                onFenced: @escaping @Sendable (UInt32) -> Void = { _ in }, mayAcknowledge: @escaping @Sendable () -> Bool = { true },
                logger: Logger) {
        self.journal = journal
        self.secret = secret
        self.syncReplicas = syncReplicas
        self.onFenced = onFenced
        self.mayAcknowledge = mayAcknowledge
        self.logger = logger
        state = Mutex(State(role: role, replicated: journal.committedOffset))
    }

    /// Cluster mode: whether this leader may commit now (its lease certainly still exists:
    /// `ClusterNode.mayAcknowledge`). Checked by every wait for replication before it returns.
    let mayAcknowledge: @Sendable () -> Bool
    /// How often a wait for replication checks `mayAcknowledge` again while it says no.
    static let acknowledgeRecheck: Duration = .milliseconds(20)

    /// Called once when this leader learns of a newer epoch (the server then refuses writes).
    let onFenced: @Sendable (UInt32) -> Void

    public var role: Role { state.withLock { $0.role } }

    /// This node's leader epoch: the newest its journal knows.
    public var epoch: UInt32 { journal.leaderEpochs.current }

    /// A standby becomes the leader: what its journal holds counts as committed, and it
    /// answers fetches from now on (the caller has begun its new epoch).
    public func lead() {
        state.withLock { state in
            state.role = .leading
            state.replicated = max(state.replicated, journal.committedOffset)
            state.standbys = [:]
        }
    }

    /// A standby's leader moved to `url` (cluster mode): it stays a standby, of that leader.
    public func follow(_ url: String) {
        state.withLock { state in
            if case .following = state.role { state.role = .following(url) }
        }
    }

    /// This node learnt that a leader of a newer epoch exists: it stops taking writes.
    /// - Returns: whether it was leading (and is fenced now).
    @discardableResult
    public func fence(newerEpoch: UInt32, reason: String) -> Bool {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>]? in
            guard state.role == .leading, newerEpoch > journal.leaderEpochs.current else { return nil }
            state.role = .fenced(epoch: newerEpoch)
            // Commands waiting for standbys fail: nothing more commits here.
            defer { state.replicationWaiters = state.replicationWaiters.filter { $0.value.offset == Offset(UInt64.max) } }
            return state.replicationWaiters.values.filter { $0.offset != Offset(UInt64.max) }.map(\.continuation)
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume() }
        logger.critical("fenced: a newer leader exists; this node takes no more writes", metadata: [
            "replication.epoch": "\(epoch)", "replication.newer_epoch": "\(newerEpoch)", "replication.reason": "\(reason)",
        ])
        onFenced(newerEpoch)
        return true
    }

    // MARK: Synchronous replication

    /// With `syncReplicas`: everything below this is durable on that many standbys. On a
    /// standby, which commits what it copies, the largest offset; on a fenced leader, where it
    /// stood when fenced: what it wrote past that point was never committed, and never will be
    /// here (a new leader may not have it).
    public var replicatedOffset: Offset {
        state.withLock { state in Self.replicatedEnd(state, syncReplicas: syncReplicas) }
    }

    /// See `replicatedOffset`. In cluster mode, a leader alone in its in-sync set with no
    /// synchronous replicas asked for commits on its own fsync.
    static func replicatedEnd(_ state: borrowing State, syncReplicas: Int) -> Offset {
        if case .following = state.role { return state.leaderCommitPoint ?? Offset(UInt64.max) }
        if state.role == .leading, state.inSync?.isEmpty == true, syncReplicas == 0 { return Offset(UInt64.max) }
        return state.replicated
    }

    /// Waits until `syncReplicas` standbys have every event below `offset + 1` durable (on a
    /// standby: at once).
    ///
    /// A fenced or stopping leader commits nothing more, but its readers of the commit point
    /// (the tailer, History) keep serving what is committed until the server stops them: for
    /// them the wait goes on until their task is cancelled. (It once ended with an error, and
    /// a fenced leader's tailer then stopped, which stopped the server.)
    /// - Throws: `CancellationError` when the task is cancelled.
    public func waitForReplication(of offset: Offset) async throws {
        while true {
            await park(offset) { self.committed(offset, in: $0) }
            if state.withLock({ committed(offset, in: $0) }) {
                // Cluster mode: a leader whose lease may have expired commits nothing (a
                // process resumed from a pause learns it here, before any ack).
                if case .following = role { return }
                if mayAcknowledge() { return }
                try await Task.sleep(for: Self.acknowledgeRecheck)
                continue
            }
            // Woken by a fence or a stop: wait on, unless cancelled.
            try Task.checkCancellation()
        }
    }

    /// Whether `offset` is committed as far as standbys are concerned.
    private func committed(_ offset: Offset, in state: borrowing State) -> Bool {
        if case .following = state.role { return Self.replicatedEnd(state, syncReplicas: syncReplicas) > offset }
        return state.role == .leading && Self.replicatedEnd(state, syncReplicas: syncReplicas) > offset
    }

    /// Waits until `done` holds, checked now and each time a waiter for `offset` is resumed
    /// (replication past it, `stop()`), or the task is cancelled.
    func park(_ offset: Offset, until done: @escaping (borrowing State) -> Bool) async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if done(state) || Task.isCancelled { return true }
                    state.replicationWaiters[id] = (offset, continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.replicationWaiters.removeValue(forKey: id) }?.continuation.resume()
        }
    }

    /// The offset `syncReplicas` standbys have reached: the `syncReplicas`-th highest durable
    /// end, and never below what it was.
    static func replicated(_ state: State, syncReplicas: Int) -> Offset {
        if let members = state.inSync {
            guard members.count >= syncReplicas, !members.isEmpty else { return state.replicated }
            let lowest = members.map { state.standbys[$0]?.durable ?? .zero }.min() ?? .zero
            return max(state.replicated, lowest)
        }
        let durable = state.standbys.values.map(\.durable).sorted(by: >)
        guard syncReplicas > 0, durable.count >= syncReplicas else { return state.replicated }
        return max(state.replicated, durable[syncReplicas - 1])
    }

    /// Ends the fetches held for new batches and the waits for replication (the server is
    /// stopping).
    public func stop() {
        let waiting = state.withLock { state in
            state.stopped = true
            defer { state.replicationWaiters.removeAll() }
            return state.replicationWaiters.values.map(\.continuation)
        }
        for waiter in waiting { waiter.resume() }
    }
}
