import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A cap on the TCP connections the HTTP server holds at once, of every kind (plain HTTP,
/// long-polling, WebSocket), so that the process never runs out of file descriptors.
///
/// Without it, 20,000 idle connections took every descriptor the process may open: accepting
/// failed with EMFILE, `/healthz` went unanswered, and the process crashed once something else
/// (a thread's pipe, a journal segment) needed one. The cap leaves `descriptorsReserved`
/// descriptors for what is not a client connection: the journal's segments and readers,
/// SQLite, replication's connections, the runtime. A connection past the cap is closed as soon
/// as it is accepted, before anything is read from it, and counted (`refused`); the clients
/// already connected are served as before.
///
/// Thread-safe: two atomics.
public final class AcceptedConnections: Sendable {
    /// The most connections held at once.
    public let limit: Int
    private let open = Atomic<Int>(0)
    private let refusedCount = Atomic<Int>(0)

    public init(limit: Int) {
        precondition(limit >= 1, "a connection cap of \(limit)")
        self.limit = limit
    }

    /// Connections held now.
    public var count: Int { open.load(ordering: .relaxed) }
    /// Connections closed on arrival because the cap was reached, since start.
    public var refused: Int { refusedCount.load(ordering: .relaxed) }

    /// Takes a place for `channel` until it closes; false (and the channel closed) when none
    /// is left.
    func admit(_ channel: any Channel) -> Bool {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        guard now <= limit else {
            open.wrappingSubtract(1, ordering: .relaxed)
            refusedCount.wrappingAdd(1, ordering: .relaxed)
            channel.close(promise: nil)
            return false
        }
        channel.closeFuture.whenComplete { _ in self.open.wrappingSubtract(1, ordering: .relaxed) }
        return true
    }

    /// The process's limit on open file descriptors, after raising the soft limit to the hard
    /// one (a server is expected to use what the administrator allows; shells often start
    /// programs with a soft limit of 1,024).
    /// - Returns: the soft limit now in force, and whether it was raised.
    public static func raiseDescriptorLimit() -> (limit: Int, raised: Bool) {
        var limits = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits) == 0 else { return (1_024, false) }
        let hard = limits.rlim_max
        guard limits.rlim_cur < hard else { return (Int(clamping: limits.rlim_cur), false) }
        var raised = limits
        raised.rlim_cur = hard
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 else { return (Int(clamping: limits.rlim_cur), false) }
        return (Int(clamping: hard), true)
    }

    /// Descriptors kept for what is not a client connection, of a process allowed `limit`:
    /// a quarter of a small limit, at most 256.
    public static func descriptorsReserved(limit: Int) -> Int {
        min(256, max(16, limit / 4))
    }
}
