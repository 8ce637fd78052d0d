import GRPCCore

/// A lease granted by etcd: keys attached to it go when it expires or is revoked.
public struct EtcdLease: Sendable, Equatable {
    public var id: Int64
    /// Its time to live in seconds, as etcd granted it (it may raise a TTL below its minimum).
    public var ttl: Int64
}

extension EtcdClient {
    /// Grants a lease of `ttl` seconds.
    public func grantLease(ttl: Int64) async throws(EtcdError) -> EtcdLease {
        let request = Etcdserverpb_LeaseGrantRequest.with { $0.ttl = ttl }
        let options = unaryOptions
        let response = try await withMember { try await Etcdserverpb_Lease.Client(wrapping: $0).leaseGrant(request, options: options) }
        guard response.error.isEmpty else { throw .refused(response.error) }
        return EtcdLease(id: response.id, ttl: response.ttl)
    }

    /// Renews a lease once; returns its new time to live in seconds.
    ///
    /// Each renewal is a short stream of its own (etcd renews over a stream only), so a
    /// renewal that fails leaves nothing behind, and the next one goes to whichever member
    /// answers. The deadline is `requestTimeout`.
    /// - Throws: `.leaseNotFound` when the lease has expired or was revoked.
    public func renew(_ lease: Int64) async throws(EtcdError) -> Int64 {
        let request = Etcdserverpb_LeaseKeepAliveRequest.with { $0.id = lease }
        let options = unaryOptions
        let ttl = try await withMember { grpc in
            try await Etcdserverpb_Lease.Client(wrapping: grpc).leaseKeepAlive(options: options) { writer in
                try await writer.write(request)
                try await EtcdClient.holdOpen()
            } onResponse: { response in
                for try await message in response.messages { return message.ttl }
                throw RPCError(code: .unavailable, message: "the keep-alive stream ended without an answer")
            }
        }
        guard ttl > 0 else { throw .leaseNotFound(lease) }
        return ttl
    }

    /// Revokes a lease, deleting the keys attached to it. A lease already gone is not an error.
    public func revoke(_ lease: Int64) async throws(EtcdError) {
        let request = Etcdserverpb_LeaseRevokeRequest.with { $0.id = lease }
        let options = unaryOptions
        do {
            _ = try await withMember { try await Etcdserverpb_Lease.Client(wrapping: $0).leaseRevoke(request, options: options) }
        } catch .leaseNotFound {
            return
        }
    }

    /// The seconds a lease has left (nil: gone).
    public func timeToLive(_ lease: Int64) async throws(EtcdError) -> Int64? {
        let request = Etcdserverpb_LeaseTimeToLiveRequest.with { $0.id = lease }
        let options = unaryOptions
        let response = try await withMember { try await Etcdserverpb_Lease.Client(wrapping: $0).leaseTimeToLive(request, options: options) }
        return response.ttl > 0 ? response.ttl : nil
    }
}
