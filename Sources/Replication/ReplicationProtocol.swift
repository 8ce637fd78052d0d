import AsyncHTTPClient
import Foundation
import Journal
import NIOCore
import NIOSSL

/// Replication protocol version 1 (FORMAT.md §11): a standby fetches whole batches from its
/// leader over HTTP, each fetch starting at the standby's durable end.
public enum ReplicationProtocol {
    public static let version: UInt16 = 1
    /// The fetch route, for this version.
    public static let fetchPath = "/replication/v1/fetch"
    /// Where a standby forwards its clients' commands.
    public static let commandPath = "/replication/v1/command"
    /// Where an empty standby gets the room state to start from when the leader no longer
    /// retains offset 0 (the offset its journal then starts at, u64, and a snapshot file).
    public static let snapshotPath = "/replication/v1/snapshot"
    /// "CHLR" read as a little-endian u32.
    static let magic: UInt32 = 0x524C_4843
    public static let headerBytes = 56
    /// The HTTP header of a fetch answer in cluster mode that carries the leader's commit point
    /// (FORMAT.md §11): below it, everything is durable on the in-sync set's members.
    public static let commitPointHeader = "Chatlog-Commit-Point"
    /// `max_bytes`: default and bounds.
    public static let fetchBytesDefault = 8 << 20
    public static let fetchBytesRange = (64 << 10)...(16 << 20)
    /// `wait_ms`: the longest a leader holds a fetch with nothing new.
    public static let fetchWaitMax: Duration = .seconds(10)

    /// How long connecting to the other node may take. AsyncHTTPClient retries a refused
    /// connection until its connect timeout (10 s by default): a standby whose leader was
    /// killed then took 10 s to notice, and as long to be promoted.
    public static let connectTimeout: Duration = .seconds(1)

    /// An HTTP client for replication requests (shut it down when done).
    /// A client for a peer's replication routes; `https` URLs are checked against `trustRootsFile`
    /// (PEM; nil: the system's authorities).
    public static func makeClient(trustRootsFile: String? = nil) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(connectTimeout.components.seconds))
        if let trustRootsFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(trustRootsFile)
            configuration.tlsConfiguration = tls
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Whether `url` is an `http://` or `https://` URL with something after the scheme.
    public static func isPeerURL(_ url: String) -> Bool {
        (url.hasPrefix("http://") && url.count > 7) || (url.hasPrefix("https://") && url.count > 8)
    }
}

/// The header of a fetch response.
public struct FetchResponseHeader: Sendable, Equatable {
    public var leaderEpoch: UInt32
    public var segmentBase: Offset
    public var firstOffset: Offset
    public var nextOffset: Offset
    /// The leader's journal end when it answered.
    public var leaderCommitted: Offset
    public var leaderEarliest: Offset
    /// Cluster mode: the leader's commit point, from the answer's `Chatlog-Commit-Point` HTTP
    /// header (not one of the 56 bytes).
    public var leaderCommitPoint: Offset?

    public init(leaderEpoch: UInt32, segmentBase: Offset, firstOffset: Offset, nextOffset: Offset,
                leaderCommitted: Offset, leaderEarliest: Offset) {
        self.leaderEpoch = leaderEpoch
        self.segmentBase = segmentBase
        self.firstOffset = firstOffset
        self.nextOffset = nextOffset
        self.leaderCommitted = leaderCommitted
        self.leaderEarliest = leaderEarliest
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(ReplicationProtocol.magic, endianness: .little)
        buffer.writeInteger(ReplicationProtocol.version, endianness: .little)
        buffer.writeInteger(UInt16(0), endianness: .little)
        buffer.writeInteger(leaderEpoch, endianness: .little)
        buffer.writeInteger(UInt32(0), endianness: .little)
        for offset in [segmentBase, firstOffset, nextOffset, leaderCommitted, leaderEarliest] {
            buffer.writeInteger(offset.value, endianness: .little)
        }
    }

    /// Reads and checks a response's header, leaving `buffer` at the batches.
    public static func read(from buffer: inout ByteBuffer) throws(ReplicationError) -> FetchResponseHeader {
        guard buffer.readableBytes >= ReplicationProtocol.headerBytes,
              let magic = buffer.readInteger(endianness: .little, as: UInt32.self),
              let version = buffer.readInteger(endianness: .little, as: UInt16.self),
              let flags = buffer.readInteger(endianness: .little, as: UInt16.self),
              let epoch = buffer.readInteger(endianness: .little, as: UInt32.self),
              let reserved = buffer.readInteger(endianness: .little, as: UInt32.self),
              let segmentBase = buffer.readInteger(endianness: .little, as: UInt64.self),
              let first = buffer.readInteger(endianness: .little, as: UInt64.self),
              let next = buffer.readInteger(endianness: .little, as: UInt64.self),
              let committed = buffer.readInteger(endianness: .little, as: UInt64.self),
              let earliest = buffer.readInteger(endianness: .little, as: UInt64.self) else {
            throw .badResponse("a fetch response of \(buffer.readableBytes) bytes is shorter than its 56-byte header")
        }
        guard magic == ReplicationProtocol.magic else {
            throw .badResponse("the response does not start with CHLR: not a chatlog leader speaking replication")
        }
        guard version == ReplicationProtocol.version else {
            throw .badResponse("the leader speaks replication protocol version \(version), this server \(ReplicationProtocol.version)")
        }
        guard flags == 0, reserved == 0 else { throw .badResponse("reserved header fields are not zero") }
        guard first <= next, next <= committed, segmentBase <= first else {
            throw .badResponse("inconsistent offsets: segment \(segmentBase), first \(first), next \(next), committed \(committed)")
        }
        return FetchResponseHeader(leaderEpoch: epoch, segmentBase: Offset(segmentBase), firstOffset: Offset(first),
                                   nextOffset: Offset(next), leaderCommitted: Offset(committed), leaderEarliest: Offset(earliest))
    }
}

/// What goes wrong between a leader and a standby.
public enum ReplicationError: Error, Sendable, CustomStringConvertible {
    /// The leader answered with an error (FORMAT.md §11): its status, code and message.
    /// `truncateTo`: with `diverged`, where the standby's journal must be cut back to.
    case refused(status: Int, code: String, message: String, truncateTo: Offset? = nil)
    /// The leader's answer is not a valid fetch response.
    case badResponse(String)
    /// A node's admin route (`/api/replication`, `/api/promote`) answered `status` with an
    /// error in the documented shape.
    case answered(url: String, status: Int, code: String, message: String)
    /// The shared secret file cannot be used.
    case secret(String)

    public var description: String {
        switch self {
        case .refused(let status, let code, let message, _): "the leader refused the fetch (\(status) \(code)): \(message)"
        case .badResponse(let reason): "bad fetch response: \(reason)"
        case .answered(let url, let status, let code, let message): "\(url) answered \(status) \(code): \(message)"
        case .secret(let reason): reason
        }
    }
}

/// The secret a leader and its standbys share (`--replication-secret-file`).
public struct ReplicationSecret: Sendable {
    /// The file's content without leading and trailing white space.
    public let value: String
    public static let bytesMin = 16
    /// The PEM file of the certificate authorities that peers' TLS certificates are checked
    /// against when their URLs are `https` (`--tls-ca-file`); nil: the system's.
    public var trustRootsFile: String?

    public init(_ value: String) throws(ReplicationError) {
        guard value.utf8.count >= Self.bytesMin else {
            throw .secret("the replication secret must have at least \(Self.bytesMin) bytes (after trimming white space), it has \(value.utf8.count)")
        }
        guard value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .secret("the replication secret must be printable ASCII without spaces (it travels in an HTTP header)")
        }
        self.value = value
    }

    public static func load(path: String) throws(ReplicationError) -> ReplicationSecret {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .secret("cannot read the replication secret file \(path): \(error.localizedDescription)")
        }
        do {
            return try ReplicationSecret(text.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            throw .secret("\(path): \(error)")
        }
    }

    /// The `Authorization` header value a standby sends.
    public var authorization: String { "Bearer " + value }

    /// Whether an `Authorization` header carries this secret; compared in constant time.
    public func matches(authorization header: String?) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let given = Array(header.utf8.dropFirst(7))
        let expected = Array(value.utf8)
        var difference = UInt8(given.count == expected.count ? 0 : 1)
        for index in expected.indices { difference |= expected[index] ^ (index < given.count ? given[index] : 0) }
        return difference == 0
    }
}
