import GRPCCore

/// What can go wrong talking to etcd, in words an operator can act on.
public enum EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A `--etcd` URL that cannot be used.
    case badEndpoint(String)
    /// No member answered in time (down, partitioned, or no quorum).
    case unavailable(String)
    /// The lease is gone: expired or revoked.
    case leaseNotFound(Int64)
    /// A watch asked for a revision etcd has compacted away.
    case compacted(Int64)
    /// etcd refused the request (bad argument, permission, too large, …).
    case refused(String)

    public var description: String {
        switch self {
        case .badEndpoint(let why): "bad etcd URL: \(why)"
        case .unavailable(let why): "etcd unavailable: \(why)"
        case .leaseNotFound(let id): "etcd lease \(String(id, radix: 16)) not found (expired or revoked)"
        case .compacted(let revision): "etcd compacted its history past revision \(revision)"
        case .refused(let why): "etcd refused the request: \(why)"
        }
    }

    /// Whether another member, or the same one later, may succeed.
    public var isTransient: Bool {
        if case .unavailable = self { return true }
        return false
    }

    /// Maps a gRPC failure to what it means here.
    static func from(_ error: any Error) -> EtcdError {
        if let error = error as? EtcdError { return error }
        guard let rpc = error as? RPCError else { return .unavailable("\(error)") }
        switch rpc.code {
        case .unavailable, .deadlineExceeded, .cancelled, .aborted, .unknown, .internalError, .resourceExhausted:
            return .unavailable(rpc.message)
        case .notFound where rpc.message.contains("lease not found"):
            return .leaseNotFound(0)
        default:
            return .refused("\(rpc.code): \(rpc.message)")
        }
    }
}
