import Etcd

/// What etcd says of a cluster: its id, who leads under which epoch and for how long its lease
/// still runs, the in-sync set, and the running nodes. (Each node's durable offset and lag
/// are the node's own to say: `GET /api/replication`.)
public struct ClusterStatus: Codable, Sendable, Equatable {
    public struct Node: Codable, Sendable, Equatable {
        public var name: String
        public var url: String
        /// "leader" or "standby".
        public var role: String
        /// Whether the node is in the in-sync set (may lead next).
        public var inSync: Bool
    }

    public var cluster: String
    public var id: String
    /// The last epoch granted (the leader's, while one leads).
    public var epoch: UInt32
    public var leader: LeaderRecord?
    /// Seconds left on the leader's lease, as etcd counts them.
    public var leaderLeaseSeconds: Int64?
    public var inSyncSet: InSyncSet?
    public var nodes: [Node]

    /// Reads the cluster's keys.
    /// - Throws: `.notFound` when etcd holds no cluster of that name; `.etcd` when it does not answer.
    public static func read(etcd: EtcdClient, cluster: String) async throws(ClusterError) -> ClusterStatus {
        let keys = try ClusterKeys(cluster: cluster)
        let listed: [EtcdKeyValue]
        do {
            listed = try await etcd.list(prefix: keys.prefix).values
        } catch {
            throw .etcd(error)
        }
        let byKey = Dictionary(listed.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        guard let id = byKey[keys.id]?.value else { throw .notFound(cluster) }
        let epoch = try ClusterJSON.epoch(byKey[keys.epoch])
        let leaderKey = byKey[keys.leader]
        let leader = try leaderKey.map { kv throws(ClusterError) in try ClusterJSON.decode(LeaderRecord.self, kv.value, key: kv.key) }
        let inSyncSet = try byKey[keys.inSyncSet].map { kv throws(ClusterError) in try ClusterJSON.decode(InSyncSet.self, kv.value, key: kv.key) }
        var nodes: [Node] = []
        for kv in listed where kv.key.hasPrefix(keys.nodes) {
            let name = String(kv.key.dropFirst(keys.nodes.count))
            let record = try ClusterJSON.decode(NodeRecord.self, kv.value, key: kv.key)
            nodes.append(Node(name: name, url: record.url, role: leader?.node == name ? "leader" : "standby",
                              inSync: inSyncSet?.members.contains(name) ?? false))
        }
        var leaseSeconds: Int64?
        if let lease = leaderKey?.lease, lease != 0 {
            do {
                leaseSeconds = try await etcd.timeToLive(lease)
            } catch {
                throw .etcd(error)
            }
        }
        return ClusterStatus(cluster: cluster, id: id, epoch: epoch, leader: leader, leaderLeaseSeconds: leaseSeconds,
                             inSyncSet: inSyncSet, nodes: nodes)
    }

    /// The status as lines for a terminal.
    public var lines: [String] {
        var lines = ["cluster \(cluster) (id \(id)), epoch \(epoch)"]
        if let leader {
            var line = "leader \(leader.node) at \(leader.url), epoch \(leader.epoch)"
            if let seconds = leaderLeaseSeconds { line += ", lease \(seconds) s left" }
            lines.append(line)
        } else {
            lines.append("no leader")
        }
        if let inSyncSet { lines.append("in sync (may lead next): \(inSyncSet.members.joined(separator: ", "))") }
        for node in nodes {
            lines.append("node \(node.name) at \(node.url): \(node.role)\(node.inSync ? ", in sync" : "")")
        }
        if nodes.isEmpty { lines.append("no running nodes") }
        return lines
    }
}
