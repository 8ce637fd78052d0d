import Journal
import Logging
import Projections
import ServiceLifecycle
import Synchronization

/// A projection kept in SQLite follows the journal on its own, beside the `Tailer`, so that a
/// SQLite transaction is never on the path from commit to broadcast and ack: one writer for
/// History (scroll-back), one for Search (the full-text index).
///
/// It follows the committed journal (`CommittedTail`), applies each read in one transaction
/// (with its checkpoint), and wakes the requests waiting for it: a request waits until the
/// projection has applied everything the tailer had applied when the request came
/// (`caughtUp(to:)`), so a client that got its ack, or saw a message, finds it in the history or
/// the search it asks for next.
///
/// With a `batchInterval` (both), the writer lags on purpose: after a transaction it waits
/// that long, or until a request waits for it, and then applies everything committed meanwhile
/// (up to `batchBytesMax`) in one transaction. The cost of both is largely per transaction
/// (FTS5: a new segment, merges; History: the last block of each room written again, a page
/// of the write-ahead log each): one transaction every interval instead of one per commit.
/// Search's transactions run on a `BackgroundThread` (nice 19) unless a request waits: under
/// load the index lags and the chat keeps the CPU; a search that waits has it caught up at
/// normal priority. History's run at normal priority: requests for it are frequent.
///
/// A failure stops it. History's (`Failure.refusesCommands`) makes the decider refuse commands
/// (and `/healthz` unhealthy), as a journal failure does; Search's (`.degrades`) makes searches
/// fail as unavailable while the chat goes on.
///
/// Thread-safe: its position and waiters sit behind one `Mutex`; `run` owns the tail.
final class ProjectionWriter: Service {
    /// What a failure of the projection does to the server.
    enum Failure: Sendable {
        /// Commands are refused (the decider) until a restart: History.
        case refusesCommands(Decider)
        /// Requests that need the projection fail; the rest goes on: Search.
        case degrades
    }

    /// The projection's work, as the writer calls it. A batched writer runs `transaction` and
    /// `settle` on its `BackgroundThread`, and `prepare` and `release` at its own priority:
    /// those may use another projection's database, which a thread at nice 19 must not hold
    /// (a `history` request would wait behind it while the machine is busy).
    struct Steps: Sendable {
        /// Readies one read's transaction and returns it.
        var prepare: @Sendable ([RecordBatch]) throws -> @Sendable () throws -> Void
        /// After each transaction: erasure of deleted text, the write-ahead log's bound.
        var settle: @Sendable () throws -> Void
        /// Then: what other projections may let go.
        var release: @Sendable () throws -> Void = {}
    }

    /// Read size of a batched writer's transaction: what it applies at most at once (about
    /// 7,000 messages of 100 bytes): also what a search that arrives during a background
    /// transaction may wait for.
    static let batchBytesMax = 1 << 20

    let name: String
    let commit: CommitPoint
    let steps: Steps
    let readBytesMax: Int
    let batchInterval: Duration?
    let onFailure: Failure
    /// The writer whose projection must have applied a read before this one applies it.
    let after: ProjectionWriter?
    /// Where a batched writer's transactions run while no request waits.
    let background: BackgroundThread?
    let logger: Logger
    /// Fault injection (`ChatServerConfiguration.failHistoryWritesAfterBatches`, `.failSearchWritesAfterBatches`).
    let failAfterBatches: Int?

    private struct State {
        var next: Offset
        var failure: String?
        var waiters: [(Offset, CheckedContinuation<Result<Void, ChatFailure>, Never>)] = []
        var batchesApplied = 0
    }

    struct InjectedFault: Error, CustomStringConvertible {
        var description: String { "SQLite write failed (fault injected)" }
    }

    private let state: Mutex<State>

    /// - Parameters:
    ///   - name: the projection's name in logs, metrics and errors (`history`, `search`).
    ///   - next: where the projection stands (its checkpoint, caught up at start).
    ///   - inBackground: a batched writer's transactions run at nice 19 while no request waits.
    init(name: String, commit: CommitPoint, steps: Steps, next: Offset, readBytesMax: Int, batchInterval: Duration? = nil,
         inBackground: Bool = true, after: ProjectionWriter? = nil, onFailure: Failure, failAfterBatches: Int? = nil, logger: Logger) {
        self.after = after
        self.name = name
        self.failAfterBatches = failAfterBatches
        self.commit = commit
        self.steps = steps
        self.readBytesMax = readBytesMax
        self.batchInterval = batchInterval
        self.onFailure = onFailure
        self.logger = logger
        background = batchInterval != nil && inBackground ? BackgroundThread() : nil
        state = Mutex(State(next: next))
    }

    /// History's writer, which applies what committed in the last `interval` in one
    /// transaction (at once when a request waits), at normal priority: a request for
    /// History waits for it, so it must not fall behind under load.
    static func history(_ history: HistoryProjection, commit: CommitPoint, decider: Decider, interval: Duration, readBytesMax: Int,
                        failAfterBatches: Int? = nil, logger: Logger) throws -> ProjectionWriter {
        ProjectionWriter(
            name: "history", commit: commit,
            steps: Steps(prepare: { batches in { try history.apply(batches) } }, settle: {
                try history.eraseDeletedText()
                try history.boundWriteAheadLog()
            }),
            next: try history.nextOffset(), readBytesMax: readBytesMax, batchInterval: interval, inBackground: false,
            onFailure: .refusesCommands(decider),
            failAfterBatches: failAfterBatches, logger: logger)
    }

    /// Search's writer, which indexes once every `interval` at most (unless a search waits),
    /// each read once History's writer has applied it (the index takes out of itself the text
    /// History says an edit or a deletion replaced), and then lets History forget those texts.
    static func search(_ search: SearchProjection, history: HistoryProjection, after historyWriter: ProjectionWriter,
                       commit: CommitPoint, interval: Duration, readBytesMax: Int,
                       failAfterBatches: Int? = nil, logger: Logger) throws -> ProjectionWriter {
        ProjectionWriter(
            name: "search", commit: commit,
            steps: Steps(prepare: { batches in
                let replaced = try history.replacedTexts(of: batches)
                return { try search.apply(batches, replaced: replaced) }
            }, settle: {
                try search.eraseDeletedText()
                try search.boundWriteAheadLog()
            }, release: {
                try history.pruneReplaced(below: try search.nextOffset())
            }),
            next: try search.nextOffset(), readBytesMax: readBytesMax, batchInterval: interval, after: historyWriter,
            onFailure: .degrades, failAfterBatches: failAfterBatches, logger: logger)
    }

    /// Waits until the projection holds every event below `offset`.
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

    /// The next offset the projection will write (what it holds ends before it).
    var position: Offset { state.withLock { $0.next } }

    private var someoneWaits: Bool { state.withLock { !$0.waiters.isEmpty } }

    func run() async throws {
        // On shutdown, after the tailer: it applies what is committed, then stops.
        try await cancelWhenGracefulShutdown { try await self.follow(waiting: true) }
        if failure == nil { try await follow(waiting: false) }
        await background?.shutdown()
    }

    /// Applies what commits from the projection's position on; `waiting`: for as long as the
    /// journal is open, else what is committed now.
    private func follow(waiting: Bool) async throws {
        var tail = CommittedTail(commit: commit, from: position, readBytesMax: batchInterval == nil ? readBytesMax : Self.batchBytesMax)
        do {
            // A catch-up at start may have left a large write-ahead log.
            try steps.settle()
            try steps.release()
            while var batches = try await tail.nextBatches(waiting: waiting) {
                if let interval = batchInterval, waiting {
                    try await pause(interval)
                    // Everything committed meanwhile, in the same transaction.
                    var bytes = batches.reduce(0) { $0 + $1.framedRecords.readableBytes }
                    while bytes < Self.batchBytesMax, let more = try await tail.nextBatches(waiting: false) {
                        batches += more
                        bytes += more.reduce(0) { $0 + $1.framedRecords.readableBytes }
                    }
                }
                try await apply(batches, end: tail.next)
            }
        } catch is CancellationError {
            return
        } catch {
            fail(error, at: tail.next)
            // A service that returns early would stop the server: wait for its shutdown.
            if waiting { try? await gracefulShutdown() }
        }
    }

    /// Waits `interval`, or less once a request waits for the projection (checked every
    /// `pauseTick`).
    private func pause(_ interval: Duration) async throws {
        var waited = Duration.zero
        while waited < interval, !someoneWaits {
            try await Task.sleep(for: Self.pauseTick)
            waited += Self.pauseTick
        }
    }

    /// How often a batched writer's pause looks for a waiting request: the most a search waits
    /// for the index beyond its transaction.
    static let pauseTick = Duration.milliseconds(10)

    /// Applies one read's batches in one transaction (with the projection's checkpoint), then
    /// wakes the requests waiting for them.
    private func apply(_ batches: ArraySlice<RecordBatch>, end: Offset) async throws {
        if let limit = failAfterBatches {
            let applied = state.withLock { state in
                state.batchesApplied += batches.count
                return state.batchesApplied
            }
            if applied > limit { throw InjectedFault() }
        }
        if let after, case .failure(let failure) = await after.caughtUp(to: end) {
            throw failure
        }
        let steps = self.steps
        let transaction = try steps.prepare(Array(batches))
        if let background, !someoneWaits {
            try await background.run {
                try transaction()
                try steps.settle()
            }
        } else {
            try transaction()
            try steps.settle()
        }
        try steps.release()
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
        let reason = "\(name) storage failed: \(error)"
        switch onFailure {
        case .refusesCommands(let decider):
            logger.critical("\(name) writer stopped; refusing commands until a restart", metadata: ["journal.offset": "\(offset)", "error": "\(error)"])
            decider.refuse(reason)
        case .degrades:
            logger.critical("\(name) writer stopped; \(name) is unavailable until a restart, the chat goes on",
                            metadata: ["journal.offset": "\(offset)", "error": "\(error)"])
        }
        let waiters = state.withLock { state in
            state.failure = reason
            defer { state.waiters = [] }
            return state.waiters.map(\.1)
        }
        for waiter in waiters { waiter.resume(returning: .failure(.unavailable(reason))) }
    }
}
