import Etcd

/// Why a node cannot take part in its cluster, in words an operator can act on.
public enum ClusterError: Error, Sendable, Equatable, CustomStringConvertible {
    case badName(String)
    /// etcd holds no cluster of this name.
    case notFound(String)
    /// Another running node has registered the same name.
    case duplicateNode(String)
    /// The journal belongs to another cluster (its id differs from the cluster's in etcd).
    case wrongCluster(journal: String, etcd: String)
    /// etcd's value for a key is not what chatlog writes there.
    case corrupt(String)
    /// The epoch would pass 2³²−1, the largest a batch header carries.
    case epochExhausted
    case etcd(EtcdError)

    public var description: String {
        switch self {
        case .badName(let why): why
        case .notFound(let cluster): "etcd holds no cluster called \(cluster) (no node of it has started)"
        case .duplicateNode(let name): "another running node is already called \(name) in this cluster; give each node its own --node"
        case .wrongCluster(let journal, let etcd):
            "this journal belongs to cluster id \(journal), but the cluster in etcd has id \(etcd): a second cluster with the same name, or the wrong --journal"
        case .corrupt(let why): "cluster state in etcd is damaged: \(why)"
        case .epochExhausted: "the leader epoch has reached its maximum (4294967295)"
        case .etcd(let error): error.description
        }
    }
}
