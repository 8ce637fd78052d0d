#if canImport(Glibc)
import Glibc
#endif
import NIOPosix

/// One thread at the lowest CPU priority (nice 19), for work that may wait while the chat has
/// anything else to do: the search index's transactions. Under load the kernel gives it what
/// the chat leaves (a nice-19 thread weighs 15 against a normal thread's 1,024), so indexing
/// lags instead of taking CPU from sends and deliveries; when the cores are idle it runs at
/// full speed.
///
/// Thread-safe. `shutdown()` before it is released.
final class BackgroundThread: Sendable {
    /// The thread's nice value: the lowest priority Linux has.
    static let niceness: Int32 = 19

    private let pool = NIOThreadPool(numberOfThreads: 1)

    init() {
        pool.start()
    }

    /// Runs `body` on the thread and returns what it returns.
    /// - Throws: what `body` throws; `CancellationError` once shut down.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive {
            // On Linux a nice value is a thread's, and `who` 0 is the calling thread (not the
            // process, as POSIX has it). Unprivileged: raising a nice value needs no
            // capability. Idempotent: one system call per transaction.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Self.niceness)
            return try body()
        }
    }

    func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}
