import Journal
import Logging
import Projections
import ServiceLifecycle
import Synchronization

/// History (scroll-back, SQLite) follows the journal on its own, beside the `Tailer`, so that
/// a SQLite transaction is never on the path from commit to broadcast and ack.
///
/// It follows the committed journal (`CommittedTail`), applies each read in one transaction
/// (with its checkpoint), and wakes the `history` requests
/// waiting for it: a request waits until History has applied everything the tailer had
/// applied when the request came (`caughtUp(to:)`), so a client that got its ack, or saw a
/// message, finds it in the history it asks for next. A failure stops it: the decider refuses
/// commands and history requests fail, as for a journal failure.
///
/// Thread-safe: its position and waiters sit behind one `Mutex`; `run` owns the tail.
final class HistoryWriter: Service {
    let commit: CommitPoint
    let history: HistoryProjection
    let decider: Decider
    let readBytesMax: Int
    let logger: Logger
    /// Fault injection (`ChatServerConfiguration.failHistoryWritesAfterBatches`).
    let failAfterBatches: Int?

    private struct State {
        var next: Offset
        var failure: String?
        var waiters: [(Offset, CheckedContinuation<Result<Void, ChatFailure>, Never>)] = []
        var batchesApplied = 0
    }

    struct InjectedFault: Error, CustomStringConvertible {
        var description: String { "SQLite write failed (fault injected: failHistoryWritesAfterBatches)" }
    }

    private let state: Mutex<State>

    /// - Parameter next: where History stands (its checkpoint, caught up at start).
    init(commit: CommitPoint, history: HistoryProjection, next: Offset, decider: Decider,
         readBytesMax: Int, failAfterBatches: Int? = nil, logger: Logger) {
        self.failAfterBatches = failAfterBatches
        self.commit = commit
        self.history = history
        self.decider = decider
        self.readBytesMax = readBytesMax
        self.logger = logger
        state = Mutex(State(next: next))
    }

    /// Waits until History holds every event below `offset`.
    func caughtUp(to offset: Offset) async -> Result<Void, ChatFailure> {
        await withCheckedContinuation { continuation in
            let now: Result<Void, ChatFailure>? = state.withLock { state in
                if state.next >= offset { return .success(()) }
                if let failure = state.failure { return .failure(.unavailable(failure)) }
                state.waiters.append((offset, continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    var failure: String? { state.withLock { $0.failure } }

    /// The next offset History will write (what it holds ends before it).
    var position: Offset { state.withLock { $0.next } }

    func run() async throws {
        // On shutdown, after the tailer: it applies what is committed, then stops.
        try await cancelWhenGracefulShutdown { try await self.follow(waiting: true) }
        if failure == nil { try await follow(waiting: false) }
    }

    /// Applies what commits from History's position on; `waiting`: for as long as the
    /// journal is open, else what is committed now.
    private func follow(waiting: Bool) async throws {
        var tail = CommittedTail(commit: commit, from: position, readBytesMax: readBytesMax)
        do {
            // A catch-up at start may have left a large write-ahead log.
            try history.boundWriteAheadLog()
            while let batches = try await tail.nextBatches(waiting: waiting) { try apply(batches, end: tail.next) }
        } catch is CancellationError {
            return
        } catch {
            fail(error, at: tail.next)
            if waiting { try? await gracefulShutdown() }
        }
    }

    /// Applies one read's batches in one transaction (with History's checkpoint), then wakes
    /// the requests waiting for them.
    private func apply(_ batches: ArraySlice<RecordBatch>, end: Offset) throws {
        if let limit = failAfterBatches {
            let applied = state.withLock { state in
                state.batchesApplied += batches.count
                return state.batchesApplied
            }
            if applied > limit { throw InjectedFault() }
        }
        try history.apply(Array(batches))
        try history.eraseDeletedText()
        try history.boundWriteAheadLog()
        let ready = state.withLock { state -> [CheckedContinuation<Result<Void, ChatFailure>, Never>] in
            state.next = end
            var ready: [CheckedContinuation<Result<Void, ChatFailure>, Never>] = []
            state.waiters.removeAll { waiter in
                guard waiter.0 <= end else { return false }
                ready.append(waiter.1)
                return true
            }
            return ready
        }
        for waiter in ready { waiter.resume(returning: .success(())) }
    }

    private func fail(_ error: any Error, at offset: Offset) {
        let reason = "history storage failed: \(error)"
        logger.critical("history writer stopped; refusing commands until a restart", metadata: ["journal.offset": "\(offset)", "error": "\(error)"])
        decider.refuse(reason)
        let waiters = state.withLock { state in
            state.failure = reason
            defer { state.waiters = [] }
            return state.waiters.map(\.1)
        }
        for waiter in waiters { waiter.resume(returning: .failure(.unavailable(reason))) }
    }
}
