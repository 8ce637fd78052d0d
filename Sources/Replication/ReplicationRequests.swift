import AsyncHTTPClient
import Foundation
import Journal
import NIOCore

/// One request to a running node's replication or admin route, with the replication secret:
/// a client made for it and shut down after it, whatever happens.
enum ReplicationRequest {
    /// The answer's status and body (at most `bodyBytesMax` bytes); a GET, or with `post` a POST.
    static func send(_ url: String, post: Bool = false, secret: ReplicationSecret, timeout: Duration,
                     bodyBytesMax: Int = 1 << 20) async throws -> (status: UInt, body: ByteBuffer) {
        let client = ReplicationProtocol.makeClient(trustRootsFile: secret.trustRootsFile)
        do {
            var request = HTTPClientRequest(url: url)
            if post { request.method = .POST }
            request.headers.add(name: "Authorization", value: secret.authorization)
            let response = try await client.execute(request, timeout: .seconds(timeout.components.seconds))
            let body = try await response.body.collect(upTo: bodyBytesMax)
            try await client.shutdown()
            return (response.status.code, body)
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// A non-200 answer as an error: its code and message when the body has the documented
    /// error shape, else its first bytes.
    static func failure(_ url: String, status: UInt, body: ByteBuffer) -> ReplicationError {
        if let answer = try? ReplicationJSON.decoder.decode(ErrorBody.self, from: Data(body.readableBytesView)) {
            return .answered(url: url, status: Int(status), code: answer.error.code, message: answer.error.message)
        }
        return .badResponse("\(url) answered \(status): \(String(buffer: body).prefix(200))")
    }

    /// `server` without a trailing slash, to append a path to.
    static func base(_ server: String) -> String {
        server.hasSuffix("/") ? String(server.dropLast()) : server
    }
}

extension ReplicationError {
    /// A node's non-200 answer to a request (a replication or admin route): its code and
    /// message when the body has the documented error shape, else its first bytes.
    public init(url: String, status: UInt, body: ByteBuffer) {
        self = ReplicationRequest.failure(url, status: status, body: body)
    }
}

extension ReplicationStatus {
    /// Asks a running server for its replication status (`GET /api/replication`, with the
    /// replication secret).
    public static func fetch(server: String, secret: ReplicationSecret) async throws -> ReplicationStatus {
        let url = ReplicationRequest.base(server) + "/api/replication"
        let (status, body) = try await ReplicationRequest.send(url, secret: secret, timeout: .seconds(10))
        guard status == 200 else { throw ReplicationRequest.failure(url, status: status, body: body) }
        return try ReplicationJSON.decoder.decode(ReplicationStatus.self, from: Data(body.readableBytesView))
    }

    /// Promotes a running standby (`POST /api/promote`); returns its answer, one line of JSON.
    public static func promote(server: String, secret: ReplicationSecret) async throws -> String {
        let url = ReplicationRequest.base(server) + "/api/promote"
        let (status, body) = try await ReplicationRequest.send(url, post: true, secret: secret, timeout: .seconds(60))
        guard status == 200 else { throw ReplicationRequest.failure(url, status: status, body: body) }
        return String(buffer: body)
    }
}

extension ReplicationFollower {
    /// One fetch for a backup (`backup=1`: the leader neither lists nor counts it as a
    /// standby, nor holds it): the batches from `from` (at most about `maxBytes`), checked
    /// as a standby checks its answers before appending them.
    public static func backupFetch(_ configuration: Configuration, client: HTTPClient, from: Offset,
                                   last: BatchHeader?) async throws -> (FetchResponseHeader, RawBatches) {
        try await fetch(configuration, client: client, from: from, last: last, durable: .zero, wait: false, backup: true)
    }

    /// The leader's room state for seeding an empty standby (`GET /replication/v1/snapshot`):
    /// the snapshot file's bytes (FORMAT.md §9) and the offset the standby's journal starts at.
    public static func snapshot(configuration: Configuration) async throws -> (snapshot: ByteBuffer, journalStart: Offset) {
        let url = configuration.leaderURL + ReplicationProtocol.snapshotPath
        var (status, body) = try await ReplicationRequest.send(url, secret: configuration.secret, timeout: .seconds(60), bodyBytesMax: 1 << 30)
        guard status == 200 else { throw ReplicationRequest.failure(url, status: status, body: body) }
        guard let start = body.readInteger(endianness: .little, as: UInt64.self) else {
            throw ReplicationError.badResponse("\(url) answered an empty snapshot")
        }
        return (body, Offset(start))
    }
}
