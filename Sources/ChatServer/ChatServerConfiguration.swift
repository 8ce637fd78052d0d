import ChatModel
import Journal
import NIOSSL
import Projections
import Replication

/// Everything `chatlog serve` is told: where the journal is, where to listen, who may connect,
/// and the limits. `validate()` checks it at start-up, before the journal is opened.
public struct ChatServerConfiguration: Sendable {
    public var journalDirectory: String
    public var host = "127.0.0.1"
    public var port = 3000
    /// Development mode: usernames are taken as the client states them (no token).
    public var dev = false
    /// The HS256 secret's file; nil: `<journal>/auth.secret`, generated on first start.
    public var authSecretFile: String?
    public var durability: Durability = .everyBatch
    /// The journal rolls to a new segment past this size (nil: the journal's default).
    public var segmentBytesMax: Int64?
    /// Retention: the oldest segments are deleted while the journal is larger (nil: keep all).
    public var retentionBytesMax: Int64?
    /// How often the room-state snapshot is written while the state moves; retention deletes
    /// only segments below the last one (and History's checkpoint).
    public var snapshotInterval: Duration = .seconds(60)
    /// Token mode: where the web page sends a user to sign in (the operator's login service,
    /// which sends the browser back to the page with `#token=JWT`; docs/web-page.md).
    public var webLoginURL: String?
    /// Cross-origin pages allowed (`*` for any); empty: no CORS headers (`--dev`: any).
    public var corsOrigins: [String] = []
    /// Socket.IO connection state recovery: CONNECT replies carry a `pid`, events their offset.
    public var recovery = false
    public var limits = ChatServerLimits()
    public var chatLimits = ChatLimits()
    /// Fault injection for tests: the journal fails its writes after this many bytes
    /// (`JournalConfiguration.failWritesAfterBytes`).
    public var failJournalWritesAfterBytes: Int64?
    /// Fault injection for tests: History's writes fail once it has applied this many batches
    /// (as a full or failing disk under SQLite would).
    public var failHistoryWritesAfterBatches: Int?
    /// Fault injection for tests: the search index's writes fail once it has applied this many batches.
    public var failSearchWritesAfterBatches: Int?
    /// The file of the secret a leader and its standbys share (FORMAT.md §11); a leader
    /// without one takes no standbys.
    public var replicationSecretFile: String?
    /// On a standby: its leader's URL, `http://HOST:PORT`; nil on a leader.
    public var standbyOf: String?
    /// A standby's name in its leader's status.
    public var standbyName = "standby"
    /// Cluster mode (`--etcd`): leadership through etcd, each node following whoever leads.
    public var cluster: ClusterSettings?
    /// HTTPS (`--tls-cert`, `--tls-key`): the PEM certificate chain and private key the server
    /// listens with; nil: plain HTTP.
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// The PEM certificate authorities that peers' certificates are checked against when their
    /// URLs are `https` (`--tls-ca-file`); nil: the system's.
    public var tlsCAFile: String?
    /// A standby that refuses commands (`not_leader`) instead of forwarding them to its leader.
    public var readOnly = false
    /// How often a long start-up catch-up of the projections logs its progress.
    public var catchUpProgressInterval: Duration = .seconds(2)
    /// How long a connection may take to send its first complete request before it is closed
    /// (`ConnectionsAwaitingFirstRequest`).
    public var firstRequestTimeout: Duration = .seconds(30)
    /// On a leader (and on a standby once promoted): standbys that must have an event durable
    /// before it is committed (acknowledged, broadcast, in History); 0 commits on the local
    /// fsync alone.
    public var syncReplicas = 0
    /// How long a command waits for its events to be durable on `syncReplicas` standbys
    /// before it is answered `unavailable`.
    public var syncTimeout: Duration = .seconds(5)
    /// On a standby: how long a client's command forwarded to the leader may take before the
    /// client is answered `unavailable`. The leader decides it only within the first half of
    /// this (`ForwardedCommand.deadlineMs`), so a command the standby gave up on is never
    /// applied later, as long as the nodes' clocks differ by less than that half.
    public var forwardTimeout: Duration = .seconds(30)
    /// TCP connections the HTTP server holds at once, of every kind; nil: as many as the
    /// file-descriptor limit allows with some kept in reserve (`AcceptedConnections`). Never
    /// above that.
    public var tcpConnectionsMax: Int?
    /// How long an HTTP connection may be idle after its first request, or take to send a
    /// request's head (`WebSocketHTTPChannel.Configuration.idleTimeout`).
    public var httpIdleTimeout: Duration = .seconds(30)
    /// Whether a client's address (for per-address caps) is the last in `X-Forwarded-For`:
    /// only behind a proxy that sets it.
    public var trustForwardedFor = false

    public init(journalDirectory: String) {
        self.journalDirectory = journalDirectory
    }

    public var authSecretPath: String { authSecretFile ?? journalDirectory + "/auth.secret" }

    /// `https` with `--tls-cert`, else `http`.
    public var scheme: String { tlsCertificateFile == nil ? "http" : "https" }

    /// The listener's TLS configuration (nil: plain HTTP), read from `--tls-cert` and `--tls-key`.
    /// - Throws: `.configuration` naming the file that cannot be read or parsed.
    func tlsServerConfiguration() throws(ChatServerError) -> TLSConfiguration? {
        guard let certificateFile = tlsCertificateFile, let keyFile = tlsKeyFile else { return nil }
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificateFile) } catch {
            throw .configuration("--tls-cert \(certificateFile): not a readable PEM certificate chain (\(error))")
        }
        guard !chain.isEmpty else { throw .configuration("--tls-cert \(certificateFile) holds no certificate") }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: keyFile, format: .pem) } catch {
            throw .configuration("--tls-key \(keyFile): not a readable PEM private key (\(error))")
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }

    public func validate() throws(ChatServerError) {
        guard (0...65_535).contains(port) else { throw .configuration("--port must be 0 to 65535, got \(port)") }
        do { try chatLimits.validate() } catch { throw .configuration(error.description) }
        try cluster?.validate(self)
        guard (tlsCertificateFile == nil) == (tlsKeyFile == nil) else {
            throw .configuration("--tls-cert and --tls-key go together: the certificate chain and its private key")
        }
        if let leader = standbyOf {
            guard ReplicationProtocol.isPeerURL(leader) else {
                throw .configuration("--standby-of must be the leader's http://HOST:PORT or https://HOST:PORT, got \(leader)")
            }
            guard replicationSecretFile != nil else {
                throw .configuration("--standby-of needs --replication-secret-file, the secret the leader was started with")
            }
        }
        guard syncReplicas >= 0, syncReplicas <= 16 else { throw .configuration("--sync-replicas must be 0 to 16, got \(syncReplicas)") }
        if syncReplicas > 0 {
            guard replicationSecretFile != nil else {
                throw .configuration("--sync-replicas needs --replication-secret-file: without it no standby can connect")
            }
            guard syncTimeout > .zero else { throw .configuration("--sync-timeout must be positive") }
        }
        if let tcpConnectionsMax, tcpConnectionsMax < 1 { throw .configuration("--tcp-connections-max must be at least 1") }
        guard httpIdleTimeout >= .milliseconds(100) else { throw .configuration("--http-idle-timeout must be at least 100ms") }
        guard forwardTimeout >= .milliseconds(200), forwardTimeout <= .seconds(600) else {
            throw .configuration("--forward-timeout must be 200ms to 10m, got \(forwardTimeout)")
        }
        guard (1...64).contains(standbyName.utf8.count),
              standbyName.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }) else {
            throw .configuration("--standby-name must be 1-64 characters of A-Z a-z 0-9 . _ -, got \(standbyName)")
        }
        try limits.validate()
    }
}

/// The chat server's limits. Each bounds memory or abuse; docs/operations.md lists them.
public struct ChatServerLimits: Sendable, Equatable {
    /// Rooms one user may create (their owned rooms, counted from the journal).
    public var roomsCreatedPerUserMax = 100
    /// Rooms one connection may be in at once.
    public var groupsPerConnectionMax = 100
    /// Client events per second per connection: a token bucket refilled at this rate...
    public var eventsPerSecond = 100.0
    /// ... holding at most this many tokens (the burst a client may send at once).
    public var eventsBurst = 200.0
    /// `user-typing` signals per connection and room: at most one per this interval; more are
    /// dropped silently (they are ephemeral).
    public var typingInterval: Duration = .milliseconds(250)
    /// Messages in one `history` page (and the default page: `historyPageDefault`); at most
    /// what History reads in one query (`HistoryProjection.pageLimitMax`).
    public var historyPageMax = HistoryProjection.pageLimitMax
    public var historyPageDefault = 50
    /// Socket.IO sessions connected (authenticated) at once; new handshakes get 503 while
    /// this many are open.
    public var connectionsMax = 10_000
    /// Socket.IO sessions not yet connected (no valid CONNECT yet) at once; past it, the
    /// oldest is closed for the newest (`SocketIOServer.Configuration.anonymousSessionsMax`).
    public var anonymousSessionsMax = 1_000
    /// Sessions not yet connected from one client address at once; more get 503.
    public var anonymousSessionsPerAddressMax = 32
    /// How long a session may take to connect (send a valid CONNECT) before it is closed.
    public var connectTimeout: Duration = .seconds(10)
    /// Frames waiting to be written to one WebSocket (a slower client is disconnected).
    public var outboundQueueFramesMax = 1_024
    /// Packets waiting for one long-polling client's next poll (a slower client is disconnected).
    public var pollingBufferPacketsMax = 1_000
    /// Bytes waiting to be written to one WebSocket, and for one polling client's next poll
    /// (a slower client is disconnected; one reply larger than this still goes to a client
    /// that has nothing else waiting).
    public var outboundBytesPerConnectionMax = 8 << 20
    /// Bytes waiting for all clients together: past it, a client that lets more pile up is
    /// disconnected. Bounds what many slow readers can take.
    public var outboundBytesTotalMax = 512 << 20
    /// Events replayed to a resuming socket before waiting for them to be written, so a
    /// replay of any length never overruns the outbound queue.
    public var replayChunkEvents = 256
    /// Events appended and not yet applied beyond which a send waits for its commit before
    /// its connection reads on (below it, sends are answered by the tailer and the connection
    /// reads on at once): bounds the acks held and the journal's queue.
    public var inFlightEventsMax = 16_384
    /// Bytes of journal read at a time by the tailer and by a replay.
    public var readBytesMax = 4 << 20
    /// How long the search index waits after indexing before it indexes what was sent
    /// meanwhile, in one transaction (a search that waits for it ends the wait at once): the
    /// most it lags behind the chat while nobody searches.
    public var searchIndexInterval = Duration.milliseconds(200)
    /// How long History waits after a transaction before it applies what was sent meanwhile,
    /// in one transaction (a request that waits for it ends the wait at once). Its cost is
    /// largely per transaction (each room's last block rewritten, a page of the write-ahead
    /// log per block): 0 applies each commit on its own.
    public var historyWriteInterval = Duration.milliseconds(50)
    /// Largest Socket.IO message (an Engine.IO packet, a polling body or a WebSocket message).
    public var maxPayloadBytes = 100_000

    public init() {}

    public func validate() throws(ChatServerError) {
        let positive: [(String, Double)] = [
            ("roomsCreatedPerUserMax", Double(roomsCreatedPerUserMax)), ("groupsPerConnectionMax", Double(groupsPerConnectionMax)),
            ("eventsBurst", eventsBurst), ("historyPageMax", Double(historyPageMax)),
            ("historyPageDefault", Double(historyPageDefault)), ("connectionsMax", Double(connectionsMax)),
            ("anonymousSessionsMax", Double(anonymousSessionsMax)), ("anonymousSessionsPerAddressMax", Double(anonymousSessionsPerAddressMax)),
            ("outboundQueueFramesMax", Double(outboundQueueFramesMax)),
            ("outboundBytesPerConnectionMax", Double(outboundBytesPerConnectionMax)), ("outboundBytesTotalMax", Double(outboundBytesTotalMax)), ("pollingBufferPacketsMax", Double(pollingBufferPacketsMax)),
            ("replayChunkEvents", Double(replayChunkEvents)), ("readBytesMax", Double(readBytesMax)),
            ("maxPayloadBytes", Double(maxPayloadBytes)), ("inFlightEventsMax", Double(inFlightEventsMax)),
        ]
        for (name, value) in positive where !(value >= 1) {
            throw .configuration("limit \(name) must be at least 1, got \(value)")
        }
        guard searchIndexInterval >= .zero, searchIndexInterval <= .seconds(60) else {
            throw .configuration("limit searchIndexInterval must be 0 to 60 s, got \(searchIndexInterval)")
        }
        guard historyWriteInterval >= .zero, historyWriteInterval <= .seconds(1) else {
            throw .configuration("limit historyWriteInterval must be 0 to 1 s, got \(historyWriteInterval)")
        }
        guard eventsPerSecond > 0, eventsPerSecond.isFinite else {
            throw .configuration("limit eventsPerSecond must be above 0, got \(eventsPerSecond)")
        }
        guard historyPageMax <= HistoryProjection.pageLimitMax else {
            throw .configuration("historyPageMax (\(historyPageMax)) exceeds what History reads in one query (\(HistoryProjection.pageLimitMax))")
        }
        guard historyPageDefault <= historyPageMax else {
            throw .configuration("historyPageDefault (\(historyPageDefault)) exceeds historyPageMax (\(historyPageMax))")
        }
        guard replayChunkEvents < outboundQueueFramesMax, replayChunkEvents < pollingBufferPacketsMax else {
            throw .configuration("replayChunkEvents (\(replayChunkEvents)) must be below outboundQueueFramesMax and pollingBufferPacketsMax: a replay chunk must fit the queue")
        }
        guard outboundBytesPerConnectionMax >= maxPayloadBytes, outboundBytesTotalMax >= outboundBytesPerConnectionMax else {
            throw .configuration("outboundBytesPerConnectionMax must be at least maxPayloadBytes, and outboundBytesTotalMax at least outboundBytesPerConnectionMax")
        }
        guard maxPayloadBytes >= 8_192 else {
            throw .configuration("maxPayloadBytes must be at least 8192 to carry a maximal message, got \(maxPayloadBytes)")
        }
    }
}

/// Why the chat server cannot start or go on.
public enum ChatServerError: Error, Sendable, CustomStringConvertible {
    case configuration(String)
    case auth(String)
    case startup(String)

    public var description: String {
        switch self {
        case .configuration(let message): "invalid configuration: \(message)"
        case .auth(let message): message
        case .startup(let message): message
        }
    }
}
