/// `GET /api/replication`: a node's role and, on a leader, its standbys.
public struct ReplicationStatus: Sendable, Codable, Equatable {
    public struct Standby: Sendable, Codable, Equatable {
        public var name: String
        public var connected: Bool
        /// Everything below this is durable on the standby.
        public var durableOffset: UInt64
        public var lagEvents: UInt64
        /// About how many bytes of batches the standby lacks (within 64 KiB).
        public var lagBytes: Int64
        /// Seconds since the standby last had everything the leader had; 0 when it has; nil
        /// when it never had.
        public var lagSeconds: Double?
        public var lastFetchSecondsAgo: Double
    }

    /// A standby's view of its leader.
    public struct Leader: Sendable, Codable, Equatable {
        public var url: String
        public var state: String
        public var leaderCommittedOffset: UInt64?
        public var lagEvents: UInt64?
        public var lastError: String?
    }

    /// Cluster mode: this node in its cluster.
    public struct Cluster: Sendable, Codable, Equatable {
        public var name: String
        public var node: String
        /// `leader`, `standby` or `leaderless` (nobody leads that this node may follow).
        public var role: String
        /// The leading node's name and epoch, as etcd last said.
        public var leader: String?
        public var leaderEpoch: UInt32?
        /// On the leader: the in-sync set it commits with, itself included.
        public var inSync: [String]?
        /// How long this node's lease in etcd certainly holds (nil: it holds none now).
        public var leaseSecondsLeft: Double?

        public init(name: String, node: String, role: String) {
            self.name = name
            self.node = node
            self.role = role
        }
    }

    public var role: String
    public var epoch: UInt32
    public var committedOffset: UInt64
    public var leader: Leader?
    public var standbys: [Standby]
    /// On a leader with synchronous replicas: how many, and the offset they have all reached
    /// (what is below it is committed).
    public var syncReplicas: Int?
    public var replicatedOffset: UInt64?
    public var cluster: Cluster?

    public init(role: String, epoch: UInt32, committedOffset: UInt64, leader: Leader?, standbys: [Standby]) {
        self.role = role
        self.epoch = epoch
        self.committedOffset = committedOffset
        self.leader = leader
        self.standbys = standbys
    }
}
