import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization

/// A key and its value as etcd holds them.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: String
    /// The revision that created the key (0 when absent), and the last one that changed it.
    public var createRevision: Int64
    public var modRevision: Int64
    /// The lease the key is attached to (0: none): the key goes when the lease does.
    public var lease: Int64

    init(_ kv: Mvccpb_KeyValue) {
        key = String(decoding: kv.key, as: UTF8.self)
        value = String(decoding: kv.value, as: UTF8.self)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        lease = kv.lease
    }

    public init(key: String, value: String, createRevision: Int64, modRevision: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.lease = lease
    }
}

/// A client of etcd's v3 gRPC API (KV, Lease, Watch): what chatlog's cluster mode needs of it.
///
/// It keeps an HTTP/2 connection to each member given and sends each request to the member
/// that last answered; when that one does not answer (down, cut off, no quorum) the request
/// goes to the next, so a client of a three-member etcd survives the loss of one. Every
/// unary request has a deadline (`requestTimeout`), and none waits for a connection that is
/// not ready: an unreachable etcd is an error within that time, not a hang.
///
/// Call `run()` in a task of its own before or while making requests; `close()` ends it.
public final class EtcdClient: Sendable {
    typealias Transport = HTTP2ClientTransport.Posix

    struct Member: Sendable {
        let endpoint: EtcdEndpoints.Endpoint
        let grpc: GRPCClient<Transport>
    }

    let members: [Member]
    /// The index of the member that answered last.
    let preferred = Atomic<Int>(0)
    /// How long one request may take on one member before the next is tried.
    public let requestTimeout: Duration
    let logger: Logger

    public var endpoints: [EtcdEndpoints.Endpoint] { members.map(\.endpoint) }

    /// - Parameter trustRootsFile: for `https` endpoints, the PEM certificate authorities their
    ///   certificates are checked against (nil: the system's).
    /// - Throws: `.badEndpoint` when a transport cannot be made for an endpoint.
    public init(endpoints: EtcdEndpoints, requestTimeout: Duration = .seconds(2), trustRootsFile: String? = nil,
                logger: Logger) throws(EtcdError) {
        var members: [Member] = []
        for endpoint in endpoints.all {
            let security: HTTP2ClientTransport.Posix.TransportSecurity = if endpoint.secure {
                .tls { tls in
                    tls.trustRoots = trustRootsFile.map { .certificates([.file(path: $0, format: .pem)]) } ?? .systemDefault
                }
            } else {
                .plaintext
            }
            do {
                var config = HTTP2ClientTransport.Posix.Config.defaults
                // Reconnect soon after a member comes back: failover must not wait on backoff.
                config.backoff.initial = .milliseconds(100)
                config.backoff.max = .seconds(1)
                let transport = try HTTP2ClientTransport.Posix(
                    target: Self.target(endpoint),
                    transportSecurity: security,
                    config: config
                )
                members.append(Member(endpoint: endpoint, grpc: GRPCClient(transport: transport)))
            } catch {
                throw .badEndpoint("\(endpoint): \(error)")
            }
        }
        self.members = members
        self.requestTimeout = requestTimeout
        self.logger = logger
    }

    /// An IP literal is connected to as an address (with TLS, an IP may not be the server name
    /// the handshake sends, and the certificate's IP entries are checked instead); any other
    /// host is looked up in DNS.
    static func target(_ endpoint: EtcdEndpoints.Endpoint) -> any ResolvableTarget {
        let parts = endpoint.host.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) {
            return ResolvableTargets.IPv4.ipv4(address: endpoint.host, port: endpoint.port)
        }
        if endpoint.host.contains(":") { return ResolvableTargets.IPv6.ipv6(address: endpoint.host, port: endpoint.port) }
        return ResolvableTargets.DNS.dns(host: endpoint.host, port: endpoint.port)
    }

    /// Runs the connections; returns after `close()` once requests in flight have finished.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for member in members {
                group.addTask {
                    do {
                        try await member.grpc.runConnections()
                    } catch {
                        self.logger.warning("etcd client stopped", metadata: ["etcd.endpoint": "\(member.endpoint)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    /// Stops taking requests and closes the connections once those in flight are done.
    public func close() {
        for member in members { member.grpc.beginGracefulShutdown() }
    }

    /// Runs `body` with a client of `endpoints` whose connections run meanwhile, and closes it.
    public static func with<T: Sendable>(
        endpoints: EtcdEndpoints,
        requestTimeout: Duration = .seconds(2),
        trustRootsFile: String? = nil,
        logger: Logger,
        _ body: (EtcdClient) async throws -> T
    ) async throws -> T {
        let client = try EtcdClient(endpoints: endpoints, requestTimeout: requestTimeout, trustRootsFile: trustRootsFile, logger: logger)
        return try await withThrowingTaskGroup { group in
            group.addTask { await client.run() }
            defer { client.close() }
            return try await body(client)
        }
    }

    /// Call options for one request: a deadline, and no waiting for a connection that is not up.
    var unaryOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = requestTimeout
        options.waitForReady = false
        return options
    }

    /// Runs `body` against the preferred member, then each other member in turn while the
    /// failure is one another member may not have (`EtcdError.isTransient`).
    func withMember<T: Sendable>(_ body: (GRPCClient<Transport>) async throws -> T) async throws(EtcdError) -> T {
        let first = preferred.load(ordering: .relaxed)
        var failure = EtcdError.unavailable("no etcd endpoint")
        for step in 0..<members.count {
            let index = (first + step) % members.count
            do {
                let result = try await body(members[index].grpc)
                if index != first { preferred.store(index, ordering: .relaxed) }
                return result
            } catch {
                failure = EtcdError.from(error)
                guard failure.isTransient else { throw failure }
                logger.debug("etcd member did not answer", metadata: ["etcd.endpoint": "\(members[index].endpoint)", "error": "\(failure)"])
            }
        }
        throw failure
    }
}

extension EtcdClient {
    // MARK: Keys

    /// The key's value, or nil when it does not exist.
    public func get(_ key: String) async throws(EtcdError) -> EtcdKeyValue? {
        let request = Etcdserverpb_RangeRequest.with { $0.key = Data(key.utf8) }
        let options = unaryOptions
        let response = try await withMember { try await Etcdserverpb_KV.Client(wrapping: $0).range(request, options: options) }
        return response.kvs.first.map(EtcdKeyValue.init)
    }

    /// Every key that starts with `prefix`, in key order, and the store's revision they were
    /// read at (a watch from `revision + 1` misses nothing after them).
    public func list(prefix: String) async throws(EtcdError) -> (values: [EtcdKeyValue], revision: Int64) {
        let request = Etcdserverpb_RangeRequest.with {
            $0.key = Data(prefix.utf8)
            $0.rangeEnd = Self.rangeEnd(ofPrefix: prefix)
        }
        let options = unaryOptions
        let response = try await withMember { try await Etcdserverpb_KV.Client(wrapping: $0).range(request, options: options) }
        return (response.kvs.map(EtcdKeyValue.init), response.header.revision)
    }

    /// Sets a key; returns the revision of the change.
    @discardableResult
    public func put(_ key: String, _ value: String, lease: Int64 = 0) async throws(EtcdError) -> Int64 {
        let request = Etcdserverpb_PutRequest.with {
            $0.key = Data(key.utf8)
            $0.value = Data(value.utf8)
            $0.lease = lease
        }
        let options = unaryOptions
        return try await withMember { try await Etcdserverpb_KV.Client(wrapping: $0).put(request, options: options) }.header.revision
    }

    /// Removes a key; returns how many keys went (0 or 1).
    @discardableResult
    public func delete(_ key: String) async throws(EtcdError) -> Int64 {
        let request = Etcdserverpb_DeleteRangeRequest.with { $0.key = Data(key.utf8) }
        let options = unaryOptions
        return try await withMember { try await Etcdserverpb_KV.Client(wrapping: $0).deleteRange(request, options: options) }.deleted
    }

    /// The end of the key range that holds exactly the keys starting with `prefix`: the
    /// prefix with its last byte raised by one (bytes of 0xff dropped first).
    static func rangeEnd(ofPrefix prefix: String) -> Data {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes)
            }
            bytes.removeLast()
        }
        return Data([0])  // every key
    }
}
