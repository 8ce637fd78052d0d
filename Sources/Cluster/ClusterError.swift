import Etcd

/// Why a node cannot take part in its cluster, in words an operator can act on.
public enum ClusterError: Error, Sendable, Equatable, CustomStringConvertible {
    case badName(String)
    /// etcd holds no cluster of this name.
    case notFound(String)
    /// Another running node has registered the same name.
    case duplicateNode(String)
    /// The journal belongs to a cluster of another name.
    case journalOfCluster(String)
    /// The journal belongs to another cluster (its id differs from the cluster's in etcd).
    case wrongCluster(journal: String, etcd: String)
    /// etcd's value for a key is not what chatlog writes there.
    case corrupt(String)
    /// The epoch would pass 2³²−1, the largest a batch header carries.
    case epochExhausted
    /// A lease TTL below etcd's minimum: etcd would silently lengthen it.
    case leaseTTLBelowMinimum(requested: Int64, minimum: Int64)
    /// Reading or writing the journal directory's cluster file failed.
    case io(String)
    case etcd(EtcdError)

    /// Whether trying again cannot help (the operator must change something).
    public var isPermanent: Bool {
        switch self {
        case .etcd(let error): !error.isTransient
        default: true
        }
    }

    public var description: String {
        switch self {
        case .badName(let why): why
        case .notFound(let cluster): "etcd holds no cluster called \(cluster) (no node of it has started)"
        case .duplicateNode(let name): "another running node is already called \(name) in this cluster; give each node its own --node"
        case .wrongCluster(let journal, let etcd):
            "this journal belongs to cluster id \(journal), but the cluster in etcd has id \(etcd): a second cluster with the same name, or the wrong --journal"
        case .journalOfCluster(let other): "this journal belongs to cluster \(other); start it with --cluster \(other), or give this cluster a journal of its own"
        case .corrupt(let why): "cluster state is damaged: \(why)"
        case .leaseTTLBelowMinimum(let requested, let minimum):
            "a lease TTL of \(requested) s is below etcd's minimum of \(minimum) s (set by its --election-timeout); use \(minimum) s or more"
        case .io(let why): why
        case .epochExhausted: "the leader epoch has reached its maximum (4294967295)"
        case .etcd(let error): error.description
        }
    }
}
