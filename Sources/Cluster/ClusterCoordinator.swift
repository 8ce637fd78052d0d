import Etcd

/// One node's view of its cluster in etcd: its registration, the cluster's id, who leads, the
/// in-sync set, and the transactions that change them. Every change that matters for safety
/// is one etcd transaction whose conditions make it fail when the state it was decided on has
/// moved: docs/CLUSTER.md argues why no acknowledged event is lost.
public final class ClusterCoordinator: Sendable {
    public let keys: ClusterKeys
    public let node: String
    public let url: String
    public let etcd: EtcdClient

    public init(etcd: EtcdClient, cluster: String, node: String, url: String) throws(ClusterError) {
        keys = try ClusterKeys(cluster: cluster)
        try ClusterKeys.check(name: node, what: "node")
        self.etcd = etcd
        self.node = node
        self.url = url
    }

    /// The cluster's id: the one in etcd, or `proposed` when this node is the cluster's first.
    public func establishID(proposing proposed: String) async throws(ClusterError) -> String {
        let result = try await call { try await $0.create(keys.id, proposed) }
        if result.created { return proposed }
        guard let existing = result.existing else { throw .corrupt("\(keys.id) vanished while read") }
        return existing.value
    }

    /// Registers this node under `nodes/<name>` on `lease` (it goes when the node stops renewing).
    /// - Throws: `.duplicateNode` when a running node holds the name on another lease.
    public func register(lease: Int64) async throws(ClusterError) {
        let key = keys.node(node)
        let record = ClusterJSON.encode(NodeRecord(url: url))
        let result = try await call { try await $0.create(key, record, lease: lease) }
        if result.created { return }
        // Ours already (a retried request that had gone through): fine.
        guard result.existing?.lease == lease else { throw .duplicateNode(node) }
    }

    /// Who leads now, and the key's revisions (nil: nobody).
    public func leader() async throws(ClusterError) -> (record: LeaderRecord, key: EtcdKeyValue)? {
        guard let kv = try await call({ try await $0.get(keys.leader) }) else { return nil }
        return (try ClusterJSON.decode(LeaderRecord.self, kv.value, key: kv.key), kv)
    }

    /// The in-sync set, and its key's revisions (nil: never written).
    public func inSyncSet() async throws(ClusterError) -> (set: InSyncSet, key: EtcdKeyValue)? {
        guard let kv = try await call({ try await $0.get(keys.inSyncSet) }) else { return nil }
        return (try ClusterJSON.decode(InSyncSet.self, kv.value, key: kv.key), kv)
    }

    /// The running nodes' names and records.
    public func nodes() async throws(ClusterError) -> [(name: String, record: NodeRecord)] {
        let listed = try await call { try await $0.list(prefix: keys.nodes) }
        var nodes: [(String, NodeRecord)] = []
        for kv in listed.values {
            nodes.append((String(kv.key.dropFirst(keys.nodes.count)), try ClusterJSON.decode(NodeRecord.self, kv.value, key: kv.key)))
        }
        return nodes
    }

    public enum Campaign: Sendable, Equatable {
        /// This node leads under `epoch`.
        case won(epoch: UInt32)
        /// Another node leads (or won the race).
        case led(by: LeaderRecord?)
        /// Nobody leads, but this node is not in the in-sync set: it may lack acknowledged
        /// events, so it must not lead.
        case ineligible(InSyncSet)
        /// Nobody leads, and a switchover to another node is under way: wait for it.
        case heldBack(HandoverRecord)
    }

    /// Tries to become leader: succeeds only if nobody leads, this node is in the in-sync set
    /// (or none was ever written: the cluster's first leader), and neither the epoch nor the
    /// set changed since they were read. The new epoch is one above both etcd's last and
    /// `localEpoch` (the journal's newest), so it is new to every journal; the in-sync set
    /// keeps its members under the new epoch. `lease` holds the leader key: when it expires,
    /// the key goes and another member may take over.
    public func campaign(lease: Int64, localEpoch: UInt32) async throws(ClusterError) -> Campaign {
        if let current = try await leader() {
            // Ours already (a retried campaign that had gone through).
            if current.record.node == node, current.key.lease == lease { return .won(epoch: current.record.epoch) }
            return .led(by: current.record)
        }
        let epochKey = try await call { try await $0.get(keys.epoch) }
        let lastEpoch = try ClusterJSON.epoch(epochKey)
        let set = try await inSyncSet()
        if let set, !set.set.members.contains(node) { return .ineligible(set.set) }
        // A switchover to another node holds the others back until its lease expires.
        let handover = try await call { try await $0.get(keys.handover) }
        if let handover {
            let record = try ClusterJSON.decode(HandoverRecord.self, handover.value, key: handover.key)
            if record.to != node { return .heldBack(record) }
        }
        let base = max(lastEpoch, localEpoch)
        guard base < UInt32.max else { throw .epochExhausted }
        let epoch = base + 1
        let record = LeaderRecord(node: node, url: url, epoch: epoch)
        let newSet = InSyncSet(epoch: epoch, members: set?.set.members ?? [node])
        let conditions: [EtcdCondition] = [
            .absent(keys.leader),
            epochKey.map { EtcdCondition.modRevision(keys.epoch, is: $0.modRevision) } ?? .absent(keys.epoch),
            set.map { EtcdCondition.modRevision(keys.inSyncSet, is: $0.key.modRevision) } ?? .absent(keys.inSyncSet),
            handover.map { EtcdCondition.modRevision(keys.handover, is: $0.modRevision) } ?? .absent(keys.handover),
        ]
        let result = try await call {
            try await $0.transaction(
                if: conditions,
                then: [.put(keys.leader, ClusterJSON.encode(record), lease: lease), .put(keys.epoch, String(epoch)),
                       .put(keys.inSyncSet, ClusterJSON.encode(newSet)), .delete(keys.handover)],
                else: [.get(keys.leader)])
        }
        if result.succeeded { return .won(epoch: epoch) }
        guard let winner = result.values.first else { return .led(by: nil) }  // the epoch or the set moved: ask again
        let winning = try ClusterJSON.decode(LeaderRecord.self, winner.value, key: winner.key)
        if winning.node == node, winner.lease == lease { return .won(epoch: winning.epoch) }
        return .led(by: winning)
    }

    /// Writes the in-sync set, only while `epoch` is still the cluster's newest: a leader that
    /// has been replaced (paused, cut off) cannot change who may lead after it.
    /// - Returns: false when a newer epoch exists (this node no longer leads).
    public func setInSyncSet(_ members: [String], epoch: UInt32) async throws(ClusterError) -> Bool {
        let set = InSyncSet(epoch: epoch, members: members)
        let result = try await call {
            try await $0.transaction(if: [.value(keys.epoch, is: String(epoch))], then: [.put(keys.inSyncSet, ClusterJSON.encode(set))])
        }
        return result.succeeded
    }

    /// How long a switchover holds the other nodes back (the handover key's own lease), in
    /// seconds: if its target never campaigns, anyone of the in-sync set may lead after this.
    public static let handoverTTL: Int64 = 5

    /// The leader of `epoch` announces that it hands leadership to `target`: only `target`
    /// campaigns until the announcement's lease expires (`handoverTTL`). Written only while
    /// `epoch` is still the cluster's newest and `target` is in the in-sync set.
    /// - Returns: the announcement's lease (revoke it to call the switchover off), or nil when
    ///   the epoch moved or `target` is not in the in-sync set.
    public func announceHandover(to target: String, epoch: UInt32) async throws(ClusterError) -> Int64? {
        guard let set = try await inSyncSet(), set.set.members.contains(target) else { return nil }
        let lease = try await call { try await $0.grantLease(ttl: Self.handoverTTL) }
        let record = ClusterJSON.encode(HandoverRecord(to: target, epoch: epoch))
        let result = try await call {
            try await $0.transaction(if: [.value(keys.epoch, is: String(epoch)), .modRevision(keys.inSyncSet, is: set.key.modRevision)],
                                     then: [.put(keys.handover, record, lease: lease.id)])
        }
        guard result.succeeded else {
            try? await etcd.revoke(lease.id)
            return nil
        }
        return lease.id
    }

    /// Gives leadership up: deletes the leader key if it is still this node's under `lease`.
    public func resign(lease: Int64) async throws(ClusterError) {
        guard let current = try await leader(), current.record.node == node, current.key.lease == lease else { return }
        _ = try await call {
            try await $0.transaction(if: [.modRevision(keys.leader, is: current.key.modRevision)], then: [.delete(keys.leader)])
        }
    }

    func call<T: Sendable>(_ body: (EtcdClient) async throws -> T) async throws(ClusterError) -> T {
        do {
            return try await body(etcd)
        } catch let error as EtcdError {
            throw .etcd(error)
        } catch {
            throw .etcd(.unavailable("\(error)"))
        }
    }
}
