import ChatModel
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdSocketIO
import HummingbirdTLS
import Journal
import Logging
import NIOCore
import NIOSSL
import Projections
import Replication
import ServiceLifecycle
import SocketIO
import UnixSignals

/// `chatlog serve`: the chat server on one journal directory.
///
/// Start-up: validate the configuration, set up identities, open the journal (taking its lock
/// and repairing a torn tail), load the room-state snapshot and catch the projections up,
/// then listen. The path of a command, in the files that carry it: `ChatGateway` (socket
/// event → command), `ChatService` (the one service every door calls), `Decider` (decide →
/// append), the journal (commit), `Tailer` (tail → apply → broadcast) with `LiveRooms`
/// (subscriptions) and `Replay` (resume). docs/ARCHITECTURE.md draws it.
///
/// Shutdown (SIGTERM, SIGINT): stop accepting connections and commands, let the commands in
/// flight commit and be answered, close every client's session (so they reconnect), stop
/// the HTTP server and the tailer, write a room-state snapshot, close the journal.
public enum ChatServer {
    /// Runs the server until a shutdown signal. `onReady` gets the bound port.
    /// - Throws: `ChatServerError` (configuration, identity, start-up), `JournalError`
    ///   (the journal cannot be opened, for instance because another server holds it).
    public static func run(
        _ configuration: ChatServerConfiguration,
        logger: Logger,
        signals: [UnixSignal] = [.sigterm, .sigint],
        onReady: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let started = ContinuousClock.now
        try configuration.validate()
        try PortCheck.requireFree(host: configuration.host, port: configuration.port)

        // Identity first: a missing secret should fail before the journal is touched.
        let identity: Identity
        if configuration.dev {
            identity = .development
            logger.warning("development mode: usernames are taken as clients state them, identities are NOT checked; do not expose this server")
        } else {
            try FileManager.default.createDirectory(atPath: configuration.journalDirectory, withIntermediateDirectories: true)
            let (secret, generated) = try AuthSecret.load(path: configuration.authSecretPath, create: configuration.authSecretFile == nil)
            if generated {
                logger.notice("generated a token secret", metadata: ["auth.secret_file": "\(configuration.authSecretPath)"])
            }
            identity = await Identity.tokens(secret: secret)
        }

        var replicationSecret: ReplicationSecret?
        if let path = configuration.replicationSecretFile {
            do {
                replicationSecret = try ReplicationSecret.load(path: path)
            } catch {
                throw ChatServerError.configuration(error.description)
            }
            replicationSecret?.trustRootsFile = configuration.tlsCAFile
        }
        let tls = try configuration.tlsServerConfiguration()

        var journalConfiguration = JournalConfiguration()
        journalConfiguration.durability = configuration.durability
        if let bytes = configuration.segmentBytesMax { journalConfiguration.segmentBytesMax = bytes }
        // Retention deletes only what the projections have made durable: nothing until they
        // have caught up at start-up, then what `SnapshotKeeper` releases.
        journalConfiguration.retention = Retention(totalBytesMax: configuration.retentionBytesMax, floor: .zero)
        journalConfiguration.recordBytesMax = 64 << 10
        journalConfiguration.failWritesAfterBytes = configuration.failJournalWritesAfterBytes
        let context = StackContext(identity: identity, replicationSecret: replicationSecret, tls: tls, started: started,
                                   logger: logger, signals: signals, onReady: onReady, cluster: nil)
        if let cluster = configuration.cluster {
            try await ClusterServer.run(configuration, settings: cluster, logger: logger, signals: signals) { [journalConfiguration] stackConfiguration, stack in
                var stackContext = context
                stackContext.started = .now
                stackContext.signals = []  // the cluster driver handles them
                stackContext.cluster = stack
                try await runStack(stackConfiguration, journalConfiguration: journalConfiguration, stackContext)
            }
        } else {
            try await runStack(configuration, journalConfiguration: journalConfiguration, context)
        }
    }

    /// What a serving stack is given besides its configuration and journal.
    struct StackContext: Sendable {
        var identity: Identity
        var replicationSecret: ReplicationSecret?
        /// HTTPS: the listener's TLS configuration.
        var tls: TLSConfiguration?
        var started: ContinuousClock.Instant
        var logger: Logger
        /// The signals that stop it (none in cluster mode, where the driver stops it).
        var signals: [UnixSignal]
        var onReady: @Sendable (Int) async -> Void
        /// Cluster mode: the stack's role and its link to the cluster driver.
        var cluster: ClusterStack?
    }

    /// Opens the journal (a standby first cutting what its leader never had) and serves it
    /// until stopped; in cluster mode, once per role (`ClusterServer`).
    private static func runStack(_ configuration: ChatServerConfiguration, journalConfiguration: JournalConfiguration,
                                 _ context: StackContext) async throws {
        let (logger, cluster, replicationSecret) = (context.logger, context.cluster, context.replicationSecret)
        if let url = configuration.standbyOf, let replicationSecret {
            try await cutDivergentTail(configuration, leaderURL: url, secret: replicationSecret,
                                       journalConfiguration: journalConfiguration, logger: logger)
        }
        let journal = try Journal.open(directory: configuration.journalDirectory, configuration: journalConfiguration,
                                       logger: logger)
        // A standby's journal takes only its leader's batches.
        if configuration.standbyOf != nil { journal.setFollowing(true) }
        do {
            // A cluster's leader writes under the epoch etcd granted it.
            if let cluster, case .leader(let epoch) = cluster.startRole, journal.leaderEpochs.current < epoch {
                try journal.beginEpoch(epoch)
            }
            try await serve(configuration, journal: journal, context)
        } catch {
            await journal.close()
            throw error
        }
        await journal.close()
        logger.notice(cluster == nil ? "chatlog stopped" : "serving stack stopped", metadata: ["journal.offset": "\(journal.committedOffset)"])
    }

    private static func serve(_ configuration: ChatServerConfiguration, journal: Journal, _ context: StackContext) async throws {
        let (identity, replicationSecret, logger, cluster) = (context.identity, context.replicationSecret, context.logger, context.cluster)
        let (started, signals, onReady) = (context.started, context.signals, context.onReady)
        let paths = ProjectionPaths(journalDirectory: configuration.journalDirectory)
        let runner = try ProjectionRunner(journal: journal, paths: paths, limits: configuration.chatLimits, logger: logger)
        var lastProgress = ContinuousClock.now
        try runner.catchUp { done, total in
            guard ContinuousClock.now - lastProgress >= configuration.catchUpProgressInterval else { return }
            lastProgress = .now
            logger.info("catching the projections up", metadata: [
                "projection.done": "\(done)", "projection.total": "\(total)",
                "projection.percent": "\(total == 0 ? 100 : done * 100 / total)",
            ])
        }
        guard let roomState = runner.roomState, let history = runner.history, let search = runner.search else {
            preconditionFailure("the runner maintains every projection")
        }
        // The catch-up saved the snapshot: what the projections hold durably may go.
        try journal.raiseRetentionFloor(to: min(roomState.nextOffset, try history.nextOffset(), try search.nextOffset()))
        let limits = configuration.limits
        // Where the committed state stands: the journal's end, or past it on a standby seeded
        // from its leader's room state (its journal, which starts after 0, then catches up from
        // before that state).
        let statePosition = journal.earliestOffset > .zero ? max(journal.committedOffset, roomState.nextOffset)
            : journal.committedOffset
        let decider = Decider(journal: journal, roomState: roomState.state, next: statePosition, limits: limits)
        if let leader = configuration.standbyOf { decider.followLeader(leader) }
        let live = LiveRooms(rooms: roomState.state, position: statePosition, limits: limits, recovery: configuration.recovery)
        // A leader answers its standbys' fetches and, with synchronous replicas, commits only
        // what they have made durable; a standby becomes one when promoted. A leader that
        // learns of a newer epoch takes no more writes (fencing).
        let mayAcknowledge: @Sendable () -> Bool = if let node = cluster?.node { { node.mayAcknowledge } } else { { true } }
        let replicationLeader = ReplicationLeader(
            journal: journal, secret: replicationSecret, role: configuration.standbyOf.map { .following($0) } ?? .leading,
            syncReplicas: configuration.syncReplicas,
            onFenced: { epoch in decider.followLeader("the leader of epoch \(epoch) (this node was fenced)") },
            mayAcknowledge: mayAcknowledge, logger: logger)
        // A cluster's leader commits under the in-sync rule from its first event.
        if let cluster { replicationLeader.useInSyncSet(cluster.inSync) }
        let waitsForStandbys = configuration.syncReplicas > 0 || cluster != nil
        let commit = CommitPoint(journal: journal, replication: waitsForStandbys ? replicationLeader : nil)

        var socketConfiguration = SocketIOServer.Configuration()
        socketConfiguration.engine.maxPayload = limits.maxPayloadBytes
        socketConfiguration.engine.pollingBufferPacketsMax = limits.pollingBufferPacketsMax
        socketConfiguration.socket.recovery = configuration.recovery
        socketConfiguration.sessionsMax = limits.connectionsMax
        socketConfiguration.anonymousSessionsMax = limits.anonymousSessionsMax
        socketConfiguration.anonymousSessionsPerAddressMax = limits.anonymousSessionsPerAddressMax
        socketConfiguration.socket.connectTimeout = limits.connectTimeout
        socketConfiguration.outboundQueueFramesMax = limits.outboundQueueFramesMax
        socketConfiguration.outboundQueueBytesMax = limits.outboundBytesPerConnectionMax
        socketConfiguration.engine.pollingBufferBytesMax = limits.outboundBytesPerConnectionMax
        socketConfiguration.outboundBytesTotalMax = limits.outboundBytesTotalMax
        let historyWriter = try ProjectionWriter.history(history, commit: commit, decider: decider, interval: limits.historyWriteInterval,
                                                         readBytesMax: limits.readBytesMax,
                                                         failAfterBatches: configuration.failHistoryWritesAfterBatches, logger: logger)
        let searchWriter = try ProjectionWriter.search(search, history: history, after: historyWriter, commit: commit, interval: limits.searchIndexInterval,
                                                       readBytesMax: limits.readBytesMax,
                                                       failAfterBatches: configuration.failSearchWritesAfterBatches, logger: logger)
        // A standby follows its leader and, unless read-only, forwards its clients' commands.
        let follower: ReplicationFollower? = configuration.standbyOf.flatMap { url in
            replicationSecret.map { secret in
                var follow = ReplicationFollower.Configuration(leaderURL: url, secret: secret, name: configuration.standbyName)
                if let cluster {
                    // What the journal holds now the start-up applied; beyond it, only what the
                    // leader says is committed (so no reader sees what a failover may remove).
                    replicationLeader.followCommitPoint(from: journal.committedOffset)
                    follow.onLeaderCommitted = { replicationLeader.leaderCommitted($0) }
                    follow.leaderMayChange = true
                    follow.onDiverged = { cut in
                        Task { await cluster.restart("the leader says this journal diverged from offset \(cut) on") }
                    }
                }
                return ReplicationFollower(configuration: follow, journal: journal, logger: logger)
            }
        }
        let forwarder = configuration.readOnly ? nil : follower.map { Forwarder(follower: $0, journal: journal, timeout: configuration.forwardTimeout, logger: logger) }
        let service = ChatService(decider: decider, live: live, journal: journal, history: history, historyWriter: historyWriter,
                                  search: search, searchWriter: searchWriter, limits: limits, forwarder: forwarder, logger: logger)
        let gateway = ChatGateway(service: service, identity: identity, recovery: configuration.recovery, logger: logger)
        let socketIO = SocketIOServer(configuration: socketConfiguration, handler: gateway, logger: logger)
        let tailer = Tailer(service: service, commit: commit, socketIO: socketIO, followsLeader: configuration.standbyOf != nil)

        let cors: CORSPolicy = if configuration.corsOrigins.contains("*") || (configuration.dev && configuration.corsOrigins.isEmpty) {
            .any
        } else if configuration.corsOrigins.isEmpty {
            .none
        } else {
            .origins(Set(configuration.corsOrigins))
        }
        let endpoint = SocketIOEndpoint(server: socketIO, path: "/socket.io/", cors: cors,
                                        trustForwardedFor: configuration.trustForwardedFor)
        // HEAD is answered as GET without the body (load balancers, `curl -I`).
        let router = Router(options: .autoGenerateHeadEndpoints)
        endpoint.addRoutes(to: router)
        try ChatHTTPAPI.addRoutes(to: router, service: service, identity: identity, limits: limits, logger: logger)
        WebPage.load(logger: logger).addRoutes(to: router, dev: configuration.dev, recovery: configuration.recovery,
                                               loginURL: configuration.webLoginURL)
        let acceptedConnections = try Self.connectionCap(configuration, logger: logger)
        let gauges = MetricsExport.Gauges()
        router.get("/metrics") { _, _ in
            MetricsExport.scrape(gauges, socketIO: socketIO, journal: journal, live: live, history: historyWriter,
                                 search: searchWriter, connections: acceptedConnections)
        }
        router.get("/healthz") { _, _ in
            health(journal: journal, live: live, history: historyWriter, replication: replicationLeader)
        }
        // For a load balancer's checks, which look at the status alone (as Patroni's /leader
        // and /replica): 200 only on a healthy node of that role.
        router.get("/healthz/leader") { _, _ in
            health(journal: journal, live: live, history: historyWriter, replication: replicationLeader, requiring: "leader")
        }
        router.get("/healthz/standby") { _, _ in
            health(journal: journal, live: live, history: historyWriter, replication: replicationLeader, requiring: "standby")
        }
        replicationLeader.addRoutes(to: router)
        router.get("/api/replication") { request, _ in
            // Role, epoch, offsets and standbys' names are for operators: behind the secret.
            if let refusal = replicationLeader.refusal(of: request) { return refusal }
            var status = replicationLeader.status()
            if case .following = replicationLeader.role { status.leader = follower?.status() }
            if let cluster, let name = configuration.cluster?.name { status.cluster = cluster.status(cluster: name, leader: replicationLeader) }
            return json(status)
        }
        let promotion = Promotion(journal: journal, decider: decider, live: live, leader: replicationLeader, follower: follower,
                                  logger: logger)
        // In a cluster, promoting a standby is a switchover through etcd.
        let switchover = cluster.map { Switchover(stack: $0, journal: journal, decider: decider, leader: replicationLeader,
                                                  follower: follower, logger: logger) }
        router.post("/api/admin/revoke-tokens") { request, _ in
            await TokenRevocation.handle(request, identity: identity, service: service)
        }
        router.post("/api/promote") { request, _ in
            if let switchover { return await switchover.promote(request) }
            return await promotion.handle(request)
        }
        if let switchover {
            router.post("/replication/v1/handover") { request, _ in await switchover.handover(request) }
        }
        router.get(RouterPath(ReplicationProtocol.snapshotPath)) { request, _ in
            Seeding.handle(request, leader: replicationLeader, journal: journal, live: live)
        }
        let forwardedCommands = ForwardedCommands(service: service, leader: replicationLeader, logger: logger)
        router.post(RouterPath(ReplicationProtocol.commandPath)) { request, _ in
            await forwardedCommands.handle(request)
        }
        let authMode = configuration.dev ? "dev" : "token"
        let awaitingFirstRequest = ConnectionsAwaitingFirstRequest(firstRequestTimeout: configuration.firstRequestTimeout)
        let http = HTTPServerBuilder.webSocketUpgrade(configuration: {
            var webSocket = WebSocketHTTPChannel.Configuration()
            webSocket.messageBytesMax = limits.maxPayloadBytes
            webSocket.awaitingFirstRequest = awaitingFirstRequest
            webSocket.acceptedConnections = acceptedConnections
            webSocket.idleTimeout = configuration.httpIdleTimeout
            return webSocket
        }()) { uri, client in endpoint.webSocketHandler(uri: uri, client: client) }
        let app = Application(
            router: router,
            server: try context.tls.map { try .tls(http, tlsConfiguration: $0) } ?? http,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "chatlog",
                                 backlog: Self.listenBacklog),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                let seconds = (ContinuousClock.now - started).inSeconds
                logger.notice("chatlog ready", metadata: [
                    "journal.directory": "\(configuration.journalDirectory)",
                    "journal.last_offset": "\(journal.committedOffset.value == 0 ? "none" : String(journal.committedOffset.value - 1))",
                    "journal.durability": "\(configuration.durability)",
                    "auth.mode": "\(authMode)",
                    "replication.role": "\(configuration.standbyOf.map { "standby of \($0)" } ?? (replicationSecret == nil ? "leader, no standbys" : configuration.syncReplicas > 0 ? "leader, \(configuration.syncReplicas) synchronous" : "leader"))",
                    "http.address": "\(configuration.scheme)://\(configuration.host):\(port)",
                    "startup.seconds": "\(String(format: "%.2f", seconds))",
                ])
                await onReady(port)
            },
            logger: logger
        )
        let drain = Drain(socketIO: socketIO, decider: decider, live: live, replication: replicationLeader, logger: logger)
        // Started in this order, stopped in the reverse.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: historyWriter), .init(service: searchWriter), .init(service: tailer),
            .init(service: SnapshotKeeper(live: live, history: history, search: searchWriter, journal: journal, path: paths.roomStateSnapshot,
                                          interval: configuration.snapshotInterval, logger: logger)),
        ]
        if let follower { services.append(.init(service: follower, successTerminationBehavior: .ignore)) }
        if let cluster, let settings = configuration.cluster {
            services.append(.init(service: InSyncKeeper(leader: replicationLeader, node: cluster.node, syncReplicas: configuration.syncReplicas,
                                                        lagTimeout: settings.lagTimeout, logger: logger)))
        }
        if waitsForStandbys {
            services.append(.init(service: ReplicationTimeouts(live: live, socketIO: socketIO, leader: replicationLeader,
                                                               timeout: configuration.syncTimeout,
                                                               syncReplicas: configuration.syncReplicas, inSyncSet: cluster != nil)))
        }
        services += [
            .init(service: promotion),
            .init(service: socketIO),
            .init(service: app),
            // Shut down before the application: closes connections that would hold it.
            .init(service: awaitingFirstRequest),
            .init(service: drain),
        ]
        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: signals,
            cancellationSignals: [],
            logger: logger
        )
        // A client can hold an HTTP connection open (a request it never finishes, a WebSocket
        // that never answers the close): past this, what is still stopping is cancelled.
        groupConfiguration.maximumGracefulShutdownDuration = Drain.commitWait + .seconds(5)
        let group = ServiceGroup(configuration: groupConfiguration)
        await cluster?.attach(group: group, promotion: promotion, leader: replicationLeader)
        do {
            try await group.run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE || error.errnoCode == EACCES {
            // Taken since PortCheck looked (a race with another process): the same words.
            throw PortCheck.refusal(errno: error.errnoCode, host: configuration.host, port: configuration.port)
        }

        // Everything committed has been applied: save the state the next start loads.
        let (state, position) = live.snapshot()
        var snapshot = RoomStateProjection(state: state, nextOffset: position, snapshotPath: paths.roomStateSnapshot)
        do {
            try snapshot.saveSnapshot()
            logger.info("room-state snapshot written", metadata: ["journal.offset": "\(position)"])
        } catch {
            logger.error("room-state snapshot not written; the next start replays more", metadata: ["error": "\(error)"])
        }
    }

    /// The cap on TCP connections: the file-descriptor limit (raised to its hard limit) less a
    /// reserve, or `--tcp-connections-max` when lower.
    /// - Throws: `ChatServerError.configuration` when the limit leaves no room for clients.
    /// Connections the kernel queues for the server before it accepts them (the kernel caps it
    /// at `net.core.somaxconn`, 4,096 on current Linux). Hummingbird's default of 256 let a
    /// reconnect storm (thousands of clients coming back after a restart) overflow it, and each
    /// refused SYN is retried only after a second or more.
    static let listenBacklog = 4_096

    static func connectionCap(_ configuration: ChatServerConfiguration, logger: Logger) throws(ChatServerError) -> AcceptedConnections {
        let (descriptors, raised) = AcceptedConnections.raiseDescriptorLimit()
        let reserved = AcceptedConnections.descriptorsReserved(limit: descriptors)
        let allowed = descriptors - reserved
        guard allowed >= 16 else {
            throw .configuration("the file-descriptor limit (\(descriptors)) leaves no room for clients: raise it (ulimit -n)")
        }
        if let asked = configuration.tcpConnectionsMax, asked > allowed {
            logger.warning("--tcp-connections-max is above what the file-descriptor limit allows; using the lower", metadata: [
                "http.connections_max": "\(asked)", "process.descriptors_max": "\(descriptors)",
            ])
        }
        let limit = min(configuration.tcpConnectionsMax ?? allowed, allowed)
        if configuration.limits.connectionsMax > limit {
            logger.warning("--connections-max (Socket.IO sessions) is above the TCP connection cap; the cap binds first", metadata: [
                "socketio.sessions_max": "\(configuration.limits.connectionsMax)", "http.connections_max": "\(limit)",
            ])
        }
        logger.info("connection cap", metadata: [
            "http.connections_max": "\(limit)", "process.descriptors_max": "\(descriptors)",
            "process.descriptors_reserved": "\(reserved)", "process.descriptors_raised": "\(raised)",
        ])
        return AcceptedConnections(limit: limit)
    }

    /// `GET /healthz`: 200 `{"status":"ok","role":R,"offset":N}` while the journal accepts
    /// appends and the tailer applies them (`role`: `leader`, `standby` or `fenced`); 503 with
    /// the reason otherwise, and on a fenced former leader, whose state no longer moves (a
    /// newer leader exists: restart it as that one's standby). With `requiring` (`/healthz/leader`,
    /// `/healthz/standby`), also 503 on a node of another role.
    static func health(journal: Journal, live: LiveRooms, history: ProjectionWriter, replication: ReplicationLeader,
                       requiring: String? = nil) -> Response {
        let position = live.position
        let role = replication.role.name
        let reason: String? = if case .fenced(let epoch) = replication.role {
            "fenced: a leader of epoch \(epoch) exists; restart this node as its standby"
        } else if let requiring, requiring != role {
            "this node is a \(role), not a \(requiring)"
        } else if !journal.isHealthy {
            "the journal does not accept appends"
        } else if let failure = live.failure {
            failure
        } else if let failure = history.failure {
            failure
        } else {
            nil
        }
        let body: String
        let status: HTTPResponse.Status
        if let reason {
            status = .serviceUnavailable
            body = JSONValue.object([("status", .string("unavailable")), ("reason", .string(reason)), ("role", .string(role)),
                                     ("offset", .number(Double(position.value)))]).serialized()
        } else {
            status = .ok
            body = JSONValue.object([("status", .string("ok")), ("role", .string(role)),
                                     ("offset", .number(Double(position.value)))]).serialized()
        }
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
