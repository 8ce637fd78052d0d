import ArgumentParser
import ChatModel
import ChatServer
import Foundation
import Journal
import Logging
import NIOCore

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the chat server on a journal directory.",
        discussion: """
            Serves the classic Socket.IO group chat (join-group, send-group-message, \
            user-typing, leave-group, private rooms, history) at /socket.io/; a web chat page \
            at /; the HTTP API at /api/rooms (its OpenAPI document at /openapi.yaml; Bearer \
            tokens, or X-Chatlog-User with --dev); Prometheus metrics at /metrics; and \
            GET /healthz. \
            Every command is appended to the journal and acknowledged once durable; broadcasts \
            come from the journal, so a client that resumes with join-group {group, after} \
            misses nothing and sees nothing twice, across restarts.

            The journal is created when missing. Only one server may use a journal: a second \
            one fails naming the holder's pid.

            Identity: by default clients connect with auth {token}, an HS256 JWT whose sub is \
            the username (chatlog token issue). The secret is --auth-secret-file, or \
            DIR/auth.secret, generated on first start. --dev takes usernames as clients state \
            them (no check), as the tutorial did, and allows any CORS origin.

            Replication: a leader started with --replication-secret-file FILE takes standbys \
            (GET /replication/v1/fetch, FORMAT.md §11). A standby, --standby-of \
            http://LEADER:PORT with the same secret file, copies the leader's journal byte for \
            byte and serves clients from it: history, resume and live events; commands that \
            would write are forwarded to the leader (refused with not_leader with --read-only). \
            Give both nodes the same --auth-secret-file so tokens work on either. \
            GET /api/replication, with the replication secret, shows the role, and on a \
            leader each standby's durable offset and lag.

            HTTPS: --tls-cert FILE --tls-key FILE serve every route over TLS (swift-nio-ssl); \
            standbys and cluster peers then use https:// URLs, checked against --tls-ca-file \
            (or the system's authorities).

            Cluster mode (--etcd URLS --cluster NAME --node NAME --advertise-url URL, with \
            --replication-secret-file): no --standby-of; each node learns from etcd who leads \
            and follows it, and when the leader dies or is cut off another node of the in-sync \
            set takes over within about --lease-ttl, losing nothing acknowledged. A node started \
            on an empty directory joins as a standby and catches up. docs/CLUSTER.md explains \
            it; chatlog cluster status shows the cluster.

            Settings: each option may also come from a JSON file (--config FILE or \
            CHATLOG_CONFIG; keys are the long names, such as "advertise-url") and from \
            environment variables, flags first, then the environment, then the file: \
            \(ServeSettings.settings.map { ServeSettings.variable($0.name) }.joined(separator: ", ")).

            SIGTERM or SIGINT stops it cleanly: commands in flight are answered, client sessions \
            close (clients reconnect by themselves), a room-state snapshot is written, exit 0.

            Examples:
              chatlog serve --journal data/journal --dev
              chatlog serve --journal /var/lib/chatlog --host 0.0.0.0 --port 3000 --cors-origin https://app.example.com
              chatlog serve --journal /var/lib/chatlog-b --port 3001 --standby-of http://10.0.0.1:3000 \\
                --replication-secret-file /etc/chatlog/replication.secret --auth-secret-file /etc/chatlog/auth.secret
              chatlog serve --journal /var/lib/chatlog --host 0.0.0.0 --etcd http://10.0.0.9:2379 --cluster chat \\
                --node a --advertise-url http://10.0.0.1:3000 --sync-replicas 1 \\
                --replication-secret-file /etc/chatlog/replication.secret --auth-secret-file /etc/chatlog/auth.secret
            """
    )

    @OptionGroup var journal: JournalOptions
    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port to bind (0: any free port; the ready line says which).") var port = 3000
    @Flag(help: "Development mode: no tokens, usernames as clients state them, any CORS origin.") var dev = false
    @Option(help: ArgumentHelp("The HS256 token secret (default: DIR/auth.secret, generated on first start).", valueName: "file"))
    var authSecretFile: String?
    @Option(help: ArgumentHelp("fsync (every commit, the default) or interval:MS (acknowledge after the write, fsync at most every MS ms).", valueName: "policy"))
    var durability: DurabilityOption = .fsync
    @Option(help: ArgumentHelp("Roll the journal to a new segment past this many bytes (default 256 MiB; at least 4 MiB and a bit).", valueName: "bytes"))
    var segmentBytes: Int64?
    @Option(help: ArgumentHelp("Delete the oldest segments while the journal is larger than this (default: keep everything). Clients resuming from before the oldest kept offset get out_of_range; standbys that far behind must be re-seeded.", valueName: "bytes"))
    var retentionBytes: Int64?
    @Option(help: ArgumentHelp("Token mode: the login page of your token service, which the web page's Sign in button opens with ?return_to=PAGE_URL; it sends the browser back to PAGE_URL#token=JWT (docs/web-page.md).", valueName: "url"))
    var webLoginUrl: String?
    @Option(help: ArgumentHelp("How often the room-state snapshot is written while rooms change (ms, s or m). Retention deletes only segments below the last snapshot, so the rooms survive a crash; a start replays the journal after it.", valueName: "duration"))
    var snapshotInterval = "60s"
    @Option(name: .customLong("cors-origin"), help: ArgumentHelp("A cross-origin page allowed to connect (repeatable; * for any).", valueName: "origin"))
    var corsOrigins: [String] = []
    @Flag(help: "Socket.IO connection state recovery: CONNECT replies carry a pid, events their offset.") var recovery = false
    @Option(help: "Client events per second per connection (token bucket rate).") var eventsPerSecond: Double = 100
    @Option(help: "Client events one connection may send at once (token bucket size).") var eventsBurst: Double = 200
    @Option(help: "Socket.IO sessions connected (authenticated) at once; new handshakes get 503 beyond.") var connectionsMax = 10_000
    @Option(help: "Socket.IO sessions not yet connected (no valid token yet) at once; past it the oldest is closed for the newest.")
    var anonymousSessionsMax = 1_000
    @Option(name: .customLong("anonymous-sessions-per-address"), help: "Sessions not yet connected from one client address at once; more get 503.")
    var anonymousSessionsPerAddressMax = 32
    @Flag(help: "Count clients by the last address in X-Forwarded-For (only behind a proxy that sets it; otherwise clients choose their address).")
    var trustForwardedFor = false
    @Option(help: ArgumentHelp("Fault injection for tests: journal writes fail after this many bytes.", visibility: .hidden))
    var failJournalWritesAfterBytes: Int64?
    @Option(help: ArgumentHelp("Fault injection for tests: History's writes fail after this many batches.", visibility: .hidden))
    var failHistoryWritesAfterBatches: Int?
    @Option(help: ArgumentHelp("Fault injection for tests: the search index's writes fail after this many batches.", visibility: .hidden))
    var failSearchWritesAfterBatches: Int?
    @Option(help: ArgumentHelp("How often a long start-up catch-up logs its progress, in ms (for tests).", visibility: .hidden))
    var catchUpProgressMs = 2_000
    @Option(help: ArgumentHelp("How long a connection may take to send its first request, in ms (for tests; 30 s by default).", visibility: .hidden))
    var firstRequestTimeoutMs = 30_000
    @Option(help: ArgumentHelp("The secret a leader and its standbys share (at least 16 printable bytes); a leader without one takes no standbys.", valueName: "file"))
    var replicationSecretFile: String?
    @Option(help: ArgumentHelp("Run as a standby of this leader: copy its journal and serve reads.", valueName: "url"))
    var standbyOf: String?
    @Option(help: ArgumentHelp("This standby's name in its leader's status.", valueName: "name"))
    var standbyName = "standby"
    @Flag(help: "A standby that refuses commands with not_leader instead of forwarding them to its leader.")
    var readOnly = false
    @Option(help: ArgumentHelp("On a leader: commit (acknowledge, broadcast) an event only once this many standbys have it durable (default 0: on the local fsync).", valueName: "n"))
    var syncReplicas = 0
    @Option(help: ArgumentHelp("With --sync-replicas: how long a command waits for its standbys before it fails with unavailable (ms, s or m, such as 500ms or 5s).", valueName: "duration"))
    var syncTimeout = "5s"
    @Option(help: ArgumentHelp("On a standby: how long a command forwarded to the leader may take before the client is answered unavailable (the leader applies it only within the first half; node clocks must agree within that half).", valueName: "duration"))
    var forwardTimeout = "30s"
    @Option(help: ArgumentHelp("TCP connections held at once, of every kind (default: as many as the file-descriptor limit allows, less a reserve of up to 256 for the journal, History and replication); more are closed on arrival.", valueName: "n"))
    var tcpConnectionsMax: Int?
    @Option(help: ArgumentHelp("How long an HTTP connection may stay idle after a request, or take to send a request's head, before it is closed.", valueName: "duration"))
    var httpIdleTimeout = "30s"
    @Option(help: ArgumentHelp("Threads that run the network's event loops (default: half the CPU cores, at least 1; the chat's work runs on Swift's task pool, one thread per core, beside them).", valueName: "n"))
    var eventLoops: Int?
    @Option(help: ArgumentHelp("A JSON file of settings: {\"port\": 3000, \"etcd\": \"http://…\", \"dev\": true, …}, each key an option's long name (default: $CHATLOG_CONFIG). CHATLOG_* variables (CHATLOG_PORT, CHATLOG_ADVERTISE_URL, …) override it; flags override both.", valueName: "file"))
    var config: String?
    @OptionGroup(title: "HTTPS") var tls: TLSOptions
    @OptionGroup(title: "Cluster mode") var clusterOptions: ClusterServeOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard eventsPerSecond > 0, eventsBurst >= 1 else { throw ValidationError("--events-per-second must be above 0 and --events-burst at least 1") }
        guard connectionsMax >= 1 else { throw ValidationError("--connections-max must be at least 1") }
        guard anonymousSessionsMax >= 1, anonymousSessionsPerAddressMax >= 1 else {
            throw ValidationError("--anonymous-sessions-max and --anonymous-sessions-per-address must be at least 1")
        }
        if let url = webLoginUrl {
            guard url.hasPrefix("https://") || url.hasPrefix("http://"), URL(string: url)?.host != nil else {
                throw ValidationError("--web-login-url must be an http or https URL, such as https://login.example.com/chat")
            }
            guard !dev else { throw ValidationError("--web-login-url is for token mode; --dev takes usernames") }
        }
        guard let snapshot = parseDuration(snapshotInterval), snapshot >= .milliseconds(100) else {
            throw ValidationError("--snapshot-interval is a number followed by ms, s or m, at least 100ms, such as 60s")
        }
        guard parseDuration(syncTimeout) != nil else { throw ValidationError("--sync-timeout is a number followed by ms, s or m, such as 5s") }
        guard parseDuration(httpIdleTimeout) != nil else { throw ValidationError("--http-idle-timeout is a number followed by ms, s or m, such as 30s") }
        guard parseDuration(forwardTimeout) != nil else { throw ValidationError("--forward-timeout is a number followed by ms, s or m, such as 30s") }
        if let eventLoops, !(1...Self.eventLoopsMax).contains(eventLoops) {
            throw ValidationError("--event-loops must be 1 to \(Self.eventLoopsMax), got \(eventLoops)")
        }
    }

    /// The most event-loop threads `--event-loops` takes.
    static let eventLoopsMax = 256

    /// The event loops the server runs on: `--event-loops`, else half the cores (at least one).
    /// Measured on 2 cores (docs/performance.md): one event loop beside the task pool's two
    /// threads and the journal's took 7 to 14 % less CPU per acknowledged send than one loop per
    /// core, which had five busy threads share two cores. NIO's own
    /// `NIO_SINGLETON_GROUP_LOOP_COUNT`, when set, is kept when the flag is not given.
    static func eventLoopCount(flag: Int?, cores: Int, environment: [String: String]) -> Int? {
        if let flag { return flag }
        if environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] != nil { return nil }
        return max(1, cores / 2)
    }

    func run() async throws {
        let logger = logging.makeLogger(label: "chatlog.serve")
        // Before anything uses NIO's event loops (set once per process).
        if let loops = Self.eventLoopCount(flag: eventLoops, cores: System.coreCount, environment: ProcessInfo.processInfo.environment) {
            NIOSingletons.groupLoopCountSuggestion = loops
        }
        var configuration = ChatServerConfiguration(journalDirectory: journal.journal)
        configuration.host = host
        configuration.port = port
        configuration.dev = dev
        configuration.authSecretFile = authSecretFile
        configuration.durability = durability.durability
        configuration.segmentBytesMax = segmentBytes
        configuration.retentionBytesMax = retentionBytes
        configuration.snapshotInterval = parseDuration(snapshotInterval) ?? .seconds(60)
        configuration.webLoginURL = webLoginUrl
        configuration.corsOrigins = corsOrigins
        configuration.recovery = recovery
        configuration.limits.eventsPerSecond = eventsPerSecond
        configuration.limits.eventsBurst = eventsBurst
        configuration.limits.connectionsMax = connectionsMax
        configuration.limits.anonymousSessionsMax = anonymousSessionsMax
        configuration.limits.anonymousSessionsPerAddressMax = anonymousSessionsPerAddressMax
        configuration.trustForwardedFor = trustForwardedFor
        configuration.failJournalWritesAfterBytes = failJournalWritesAfterBytes
        configuration.failHistoryWritesAfterBatches = failHistoryWritesAfterBatches
        configuration.failSearchWritesAfterBatches = failSearchWritesAfterBatches
        configuration.catchUpProgressInterval = .milliseconds(max(0, catchUpProgressMs))
        configuration.firstRequestTimeout = .milliseconds(max(1, firstRequestTimeoutMs))
        configuration.replicationSecretFile = replicationSecretFile
        configuration.standbyOf = standbyOf
        configuration.standbyName = standbyName
        configuration.readOnly = readOnly
        configuration.syncReplicas = syncReplicas
        configuration.syncTimeout = parseDuration(syncTimeout) ?? .seconds(5)
        configuration.forwardTimeout = parseDuration(forwardTimeout) ?? .seconds(30)
        configuration.tcpConnectionsMax = tcpConnectionsMax
        configuration.httpIdleTimeout = parseDuration(httpIdleTimeout) ?? .seconds(30)
        configuration.cluster = clusterOptions.settings
        tls.apply(to: &configuration)
        // Before the journal opens: its metrics bind to the backend when first used.
        MetricsExport.bootstrap()
        do {
            let (host, scheme) = (self.host, configuration.scheme)
            try await ChatServer.run(configuration, logger: logger) { port in
                // For scripts and `make run`: the address, on standard output, once listening.
                FileHandle.standardOutput.write(Data("listening on \(scheme)://\(host):\(port)\n".utf8))
            }
        } catch let error as ChatServerError {
            throw CommandFailure.cannotRun("\(error)")
        } catch let error as JournalError {
            throw CommandFailure(error)
        }
    }
}

/// `--durability fsync|interval:MS`.
enum DurabilityOption: ExpressibleByArgument {
    case fsync
    case interval(milliseconds: Int)

    init?(argument: String) {
        if argument == "fsync" {
            self = .fsync
        } else if argument.hasPrefix("interval:"), let ms = Int(argument.dropFirst("interval:".count)), ms > 0, ms <= 60_000 {
            self = .interval(milliseconds: ms)
        } else {
            return nil
        }
    }

    var durability: Durability {
        switch self {
        case .fsync: .everyBatch
        case .interval(let ms): .interval(.milliseconds(ms))
        }
    }
}
