import Cluster
import Etcd
import Foundation
import Journal
import Logging
import Replication
import Synchronization
import UnixSignals

/// What `chatlog serve --etcd …` is told about its cluster (docs/CLUSTER.md).
public struct ClusterSettings: Sendable {
    /// etcd's client URLs, separated by commas (`https` ones checked against `--tls-ca-file`).
    public var etcd: String
    /// The cluster's name: its keys are under `/chatlog/NAME/`.
    public var name: String
    /// This node's name, unique in the cluster (also its standby name in the leader's status).
    public var node: String
    /// Where the other nodes reach this one (replication, forwarded commands), `http://HOST:PORT`.
    public var advertiseURL: String
    /// The leader lease's TTL in seconds (`--lease-ttl`): a dead leader is replaced within
    /// about this long.
    public var leaseTTL: Int64 = 2
    /// A member of the in-sync set that has not caught up for this long leaves it
    /// (`--replica-lag-timeout`); one whose process stopped leaves at once.
    public var lagTimeout: Duration = .seconds(10)

    public init(etcd: String, name: String, node: String, advertiseURL: String) {
        self.etcd = etcd
        self.name = name
        self.node = node
        self.advertiseURL = advertiseURL
    }

    /// The lease TTLs allowed: etcd lengthens shorter ones (its minimum is 2 s with its default
    /// timing), and a longer one only slows failover.
    public static let leaseTTLRange: ClosedRange<Int64> = 2...60

    func validate(_ configuration: ChatServerConfiguration) throws(ChatServerError) {
        guard configuration.standbyOf == nil else {
            throw .configuration("--standby-of does not go with --etcd: in a cluster each node learns from etcd whom to follow")
        }
        guard configuration.replicationSecretFile != nil else {
            throw .configuration("--etcd needs --replication-secret-file: the nodes of a cluster replicate from each other")
        }
        guard ReplicationProtocol.isPeerURL(advertiseURL) else {
            throw .configuration("--advertise-url must be this node's http://HOST:PORT (https:// with --tls-cert) as the other nodes reach it, got \(advertiseURL)")
        }
        guard Self.leaseTTLRange.contains(leaseTTL) else {
            throw .configuration("--lease-ttl must be \(Self.leaseTTLRange.lowerBound) to \(Self.leaseTTLRange.upperBound) seconds, got \(leaseTTL)")
        }
        guard lagTimeout >= .seconds(1) else { throw .configuration("--replica-lag-timeout must be at least 1s") }
        do {
            _ = try EtcdEndpoints(etcd)
            _ = try ClusterKeys(cluster: name)
            try ClusterKeys.check(name: node, what: "node")
        } catch {
            throw .configuration("\(error)")
        }
    }
}

/// Cluster mode: the node takes part in its cluster through etcd (`ClusterNode`) and runs the
/// serving stack (journal, projections, Socket.IO, HTTP, replication) in the role etcd gives
/// it, as a leader or as the standby of whoever leads.
///
/// Changes while running: a standby that wins leadership takes over in place (the promotion
/// path), and a standby whose leader changed follows the new one in place (its clients stay
/// connected). A leader that lost its leadership restarts the stack inside the process: what
/// was in flight is answered, clients are disconnected and reconnect (resuming with `after`),
/// and the start-up cuts a divergent tail (`.broken` copies kept) before following the new
/// leader. A standby told by its new leader that it holds what that leader never had
/// (`diverged`, `offset_ahead`) restarts the same way.
enum ClusterServer {
    /// Starts one serving stack with `configuration` (the role's: `standbyOf` set on a standby)
    /// and returns when it has stopped.
    typealias StartStack = @Sendable (ChatServerConfiguration, ClusterStack) async throws -> Void

    static func run(_ configuration: ChatServerConfiguration, settings: ClusterSettings, logger: Logger,
                    signals: [UnixSignal], start: @escaping StartStack) async throws {
        let endpoints: EtcdEndpoints
        do { endpoints = try EtcdEndpoints(settings.etcd) } catch { throw ChatServerError.configuration("--etcd: \(error)") }
        try await EtcdClient.with(endpoints: endpoints, trustRootsFile: configuration.tlsCAFile, logger: logger) { etcd in
            let coordinator: ClusterCoordinator
            do {
                coordinator = try ClusterCoordinator(etcd: etcd, cluster: settings.name, node: settings.node, url: settings.advertiseURL)
                try FileManager.default.createDirectory(atPath: configuration.journalDirectory, withIntermediateDirectories: true)
                // The journal's cluster file against etcd's id: a journal of another cluster is
                // refused before anything is written.
                let id = try await coordinator.join(journalDirectory: configuration.journalDirectory)
                logger.notice("cluster joined", metadata: [
                    "cluster.name": "\(settings.name)", "cluster.id": "\(id)", "cluster.node": "\(settings.node)", "etcd.endpoints": "\(endpoints)",
                ])
            } catch let error as ClusterError {
                throw ChatServerError.startup("cluster \(settings.name) at etcd \(endpoints): \(error)")
            }
            let directory = configuration.journalDirectory
            let node = ClusterNode(coordinator: coordinator, leaseTTL: settings.leaseTTL,
                                   localEpoch: { (try? Journal.newestEpoch(directory: directory)) ?? 0 }, logger: logger)
            let control = ClusterControl()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await node.run { role in await control.publish(role) }
                    } catch {
                        await control.stop(failure: error)
                    }
                }
                group.addTask {
                    for await signal in await UnixSignalsSequence(trapping: signals) {
                        logger.notice("signal received: stopping", metadata: ["signal": "\(signal)"])
                        await control.stop()
                        break
                    }
                }
                do {
                    try await serveRoles(configuration, settings: settings, node: node, control: control, logger: logger, start: start)
                } catch {
                    group.cancelAll()
                    throw error
                }
                // Cancelling the node revokes its lease: another node may lead at once.
                group.cancelAll()
            }
            if let error = control.failure {
                throw ChatServerError.startup("cluster \(settings.name): \(error)")
            }
        }
    }

    /// Runs one stack after another, each in the role etcd gives, until stopped.
    private static func serveRoles(_ configuration: ChatServerConfiguration, settings: ClusterSettings, node: ClusterNode,
                                   control: ClusterControl, logger: Logger, start: StartStack) async throws {
        while let role = await control.nextStartRole() {
            var stackConfiguration = configuration
            stackConfiguration.standbyName = settings.node
            var inSync: Set<String> = []
            switch role {
            case .leader:
                stackConfiguration.standbyOf = nil
                do {
                    inSync = try await ClusterStack.otherMembers(node.coordinator)
                } catch {
                    logger.warning("cluster: cannot read the in-sync set; trying again", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .milliseconds(200))
                    continue
                }
            case .follower(let record):
                stackConfiguration.standbyOf = record.url
            case .leaderless:
                continue
            }
            let stack = ClusterStack(node: node, startRole: role, inSync: inSync, logger: logger)
            guard await control.install(stack) else { break }
            do {
                try await start(stackConfiguration, stack)
            } catch let error as ChatServerError {
                throw error
            } catch let error as JournalError {
                if case .locked = error { throw error }
                if case .invalidConfiguration = error { throw error }
                logger.error("cluster: the serving stack failed; starting it again", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            } catch {
                logger.error("cluster: the serving stack failed; starting it again", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
            control.uninstall()
        }
    }
}

/// The cluster driver's shared state: the latest role etcd gave, the stack running, whether the
/// server is stopping.
final class ClusterControl: Sendable {
    private struct State {
        var role: ClusterRole = .leaderless
        var stopping = false
        var stack: ClusterStack?
        var waiters: [CheckedContinuation<Void, Never>] = []
        var failure: (any Error)?
    }
    private let state = Mutex(State())

    /// A new role from etcd: the running stack reacts, and a waiting start goes on.
    func publish(_ role: ClusterRole) async {
        let (stack, waiters) = state.withLock { state in
            state.role = role
            defer { state.waiters = [] }
            return (state.stack, state.waiters)
        }
        for waiter in waiters { waiter.resume() }
        await stack?.roleChanged(role)
    }

    /// Why the node stopped taking part (its name held by another running node), if it did.
    var failure: (any Error)? { state.withLock { $0.failure } }

    /// The server stops (a signal, or `failure`): the running stack shuts down, and no other
    /// starts.
    func stop(failure: (any Error)? = nil) async {
        let (stack, waiters) = state.withLock { state in
            state.stopping = true
            if state.failure == nil { state.failure = failure }
            defer { state.waiters = [] }
            return (state.stack, state.waiters)
        }
        for waiter in waiters { waiter.resume() }
        await stack?.restart("the server is stopping")
    }

    /// The role to start the next stack in, once etcd gives one (nil: stopping).
    func nextStartRole() async -> ClusterRole? {
        while true {
            let ready = state.withLock { state -> (role: ClusterRole?, done: Bool) in
                if state.stopping { return (nil, true) }
                return state.role == .leaderless ? (nil, false) : (state.role, true)
            }
            if ready.done { return ready.role }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if state.stopping || state.role != .leaderless { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        }
    }

    /// Makes `stack` the running one; false when stopping. A role that changed since the
    /// stack's was read is passed on to it.
    func install(_ stack: ClusterStack) async -> Bool {
        let (stopping, role) = state.withLock { state in
            if !state.stopping { state.stack = stack }
            return (state.stopping, state.role)
        }
        if stopping { return false }
        if role != stack.startRole { await stack.roleChanged(role) }
        return true
    }

    func uninstall() {
        state.withLock { $0.stack = nil }
    }
}
