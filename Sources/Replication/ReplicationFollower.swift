import AsyncHTTPClient
import Foundation
import Journal
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A standby's side of replication: fetches its leader's batches from its own journal end,
/// checks them and appends them byte for byte (`Journal.appendReplicated`), fetches again
/// once they are durable — so each fetch tells the leader what the standby has made durable.
///
/// A broken connection or a leader that is unavailable is retried with a growing delay
/// (`retryDelays`); an answer that needs an operator (a wrong secret, a standby that is not a
/// copy of its leader, an offset the leader no longer has) is logged as an error and retried
/// every `operatorRetry`. A storage failure of its own journal stops it (fail-stop).
public final class ReplicationFollower: Service, Sendable {
    public struct Configuration: Sendable {
        /// The leader's base URL, `http://HOST:PORT`.
        public var leaderURL: String
        public var secret: ReplicationSecret
        /// This standby's name in the leader's status.
        public var name: String
        /// About how many bytes one fetch brings.
        public var fetchBytes = ReplicationProtocol.fetchBytesDefault
        /// How long the leader may hold a fetch when there is nothing new.
        public var fetchWait: Duration = .seconds(1)
        /// Cluster mode: leadership moves by itself, so a node that answers `not_leader` or
        /// `fenced` (a leader just elected that is still taking over, or one just replaced) is
        /// asked again after the short retry delay, not after `operatorRetry`.
        public var leaderMayChange = false
        /// Called when the leader answers `diverged` or `offset_ahead` (this journal holds
        /// records the leader never had from the given offset): in cluster mode the server restarts its serving
        /// stack, which cuts the tail before following again.
        public var onDiverged: (@Sendable (Offset) -> Void)?
        /// Called with the leader's commit point from every fetch answer (cluster mode: the
        /// standby commits only below it, `ReplicationLeader.leaderCommitted`).
        public var onLeaderCommitted: (@Sendable (Offset) -> Void)?

        public init(leaderURL: String, secret: ReplicationSecret, name: String) {
            self.leaderURL = leaderURL.hasSuffix("/") ? String(leaderURL.dropLast()) : leaderURL
            self.secret = secret
            self.name = name
        }
    }

    /// Delays between retries after a transient failure: from the first, doubling, to the last.
    public static let retryDelays: ClosedRange<Duration> = .milliseconds(100) ... .seconds(5)
    /// The delay after an answer that needs an operator.
    public static let operatorRetry: Duration = .seconds(30)

    /// What it follows; the leader's URL changes with `repoint(to:)`.
    public var configuration: Configuration { state.withLock { $0.configuration } }
    let journal: Journal
    let logger: Logger
    private let state: Mutex<FollowState>

    struct FollowState {
        var configuration: Configuration
        /// `repoint(to:)` was called: the fetch in flight ends and the next goes to the new URL.
        var repointed = false
        var phase = "connecting"
        var leaderCommitted: Offset?
        var lastError: String?
        /// The newest leader epoch a fetch answer carried.
        var leaderEpoch: UInt32 = 0
        /// The header of the last batch appended and the journal end after it.
        var lastBatch: (header: BatchHeader, end: Offset)?
        /// `stop()` was called: no more fetches; the waiters learn when the last one ended.
        var stopping = false
        var stopped = false
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        /// `run`'s watcher for `stop()`, which then cancels the fetch in flight.
        var stopWatcher: CheckedContinuation<Void, Never>?
    }

    /// Fetches and forwarded commands; shut down when `run` ends.
    let client: HTTPClient

    public init(configuration: Configuration, journal: Journal, logger: Logger) {
        state = Mutex(FollowState(configuration: configuration))
        client = ReplicationProtocol.makeClient(trustRootsFile: configuration.secret.trustRootsFile)
        self.journal = journal
        self.logger = logger
    }

    /// POSTs `json` to the leader's `path` with the secret; returns the body of a 200 answer.
    /// - Throws: `ReplicationError.refused` for another status; the client's errors.
    public func post(_ path: String, json: Data, timeout: Duration) async throws -> Data {
        var request = HTTPClientRequest(url: configuration.leaderURL + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: configuration.secret.authorization)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: json))
        let response = try await client.execute(request, timeout: .seconds(timeout.components.seconds))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else { throw Self.refusal(response.status.code, body) }
        return Data(body.readableBytesView)
    }

    /// A leader's error answer (FORMAT.md §11) as an error.
    static func refusal(_ status: UInt, _ body: ByteBuffer) -> ReplicationError {
        let detail = try? ReplicationJSON.decoder.decode(ErrorBody.self, from: Data(body.readableBytesView))
        return .refused(status: Int(status), code: detail?.error.code ?? "unknown",
                        message: detail?.error.message ?? "HTTP \(status) without an error body",
                        truncateTo: detail?.error.truncateTo.map(Offset.init))
    }

    public func run() async throws {
        logger.notice("following the leader", metadata: [
            "replication.leader": "\(configuration.leaderURL)", "replication.standby": "\(configuration.name)",
            "journal.offset": "\(journal.nextOffset)",
        ])
        await cancelWhenGracefulShutdown {
            // `stop()` cancels the fetch in flight rather than waiting for it: a paused or cut-off
            // leader would otherwise hold a promotion until the fetch's timeout (30 s and more).
            // An append in flight is not cancelled: it completes first. `repoint(to:)` ends it
            // the same way, and following starts over at the new leader.
            while !Task.isCancelled {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await self.follow(self.client) }
                    group.addTask { await self.stopRequested() }
                    await group.next()
                    group.cancelAll()
                }
                let again = self.state.withLock { state in
                    defer { state.repointed = false }
                    return state.repointed && !state.stopping
                }
                guard again else { break }
                self.logger.notice("following a new leader", metadata: [
                    "replication.leader": "\(self.configuration.leaderURL)", "journal.offset": "\(self.journal.nextOffset)",
                ])
            }
        }
        let waiters = state.withLock { state in
            state.stopped = true
            defer { state.stopWaiters = [] }
            return state.stopWaiters
        }
        for waiter in waiters { waiter.resume() }
        try? await client.shutdown()
    }

    /// Stops following (promotion): cancels the fetch in flight and returns once no fetch or
    /// append is in flight, so the journal takes no more batches from the leader.
    public func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let (now, watcher) = state.withLock { state in
                state.stopping = true
                defer { state.stopWatcher = nil }
                if state.stopped { return (true, state.stopWatcher) }
                state.stopWaiters.append(continuation)
                return (false, state.stopWatcher)
            }
            watcher?.resume()
            if now { continuation.resume() }
        }
    }

    /// Follows the leader at `url` from now on (cluster mode: etcd named a new leader): the
    /// fetch in flight is cancelled and the next one goes there. The new leader checks this
    /// journal's end as every fetch does, and answers `diverged` or `offset_ahead` if it holds
    /// records the new leader never had (`Configuration.onDiverged`).
    public func repoint(to url: String) {
        let watcher = state.withLock { state in
            state.configuration.leaderURL = url.hasSuffix("/") ? String(url.dropLast()) : url
            state.repointed = true
            state.phase = "connecting"
            state.leaderCommitted = nil
            defer { state.stopWatcher = nil }
            return state.stopWatcher
        }
        watcher?.resume()
    }

    /// Returns once `stop()` or `repoint(to:)` is called, or the task is cancelled.
    private func stopRequested() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if state.stopping || state.repointed || Task.isCancelled { return true }
                    state.stopWatcher = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state in
                defer { state.stopWatcher = nil }
                return state.stopWatcher
            }?.resume()
        }
    }

    /// The newest leader epoch the leader's answers carried.
    public var leaderEpoch: UInt32 { state.withLock { $0.leaderEpoch } }

    /// Tells the former leader that a newer epoch leads now (best effort, after promotion).
    /// - Returns: whether it answered that it is fenced.
    public func fenceLeader(epoch: UInt32) async -> Bool {
        await Self.withClient(trustRootsFile: configuration.secret.trustRootsFile) { client in await self.fence(epoch: epoch, client: client) }
    }

    private func fence(epoch: UInt32, client: HTTPClient) async -> Bool {
        var request = HTTPClientRequest(url: configuration.leaderURL + "/replication/v1/fence?epoch=\(epoch)")
        request.method = .POST
        request.headers.add(name: "Authorization", value: configuration.secret.authorization)
        guard let response = try? await client.execute(request, timeout: .seconds(2)),
              let body = try? await response.body.collect(upTo: 1 << 16), response.status == .ok,
              let answer = try? ReplicationJSON.decoder.decode(FenceAnswer.self, from: Data(body.readableBytesView)) else {
            return false
        }
        return answer.fenced || answer.epoch >= epoch
    }

    private func follow(_ client: HTTPClient) async {
        var delay = Self.retryDelays.lowerBound
        while !Task.isCancelled, !state.withLock({ $0.stopping }) {
            let wait: Duration
            do {
                try await catchUp(client)
                delay = Self.retryDelays.lowerBound
                continue
            } catch is CancellationError {
                return
            } catch let error as ReplicationError {
                if case .refused(_, let code, _, let cut?) = error, ["diverged", "offset_ahead"].contains(code),
                   let onDiverged = configuration.onDiverged {
                    failed("\(error)", permanent: false)
                    onDiverged(cut)
                    wait = Self.operatorRetry
                } else if case .refused(let status, let code, _, _) = error,
                          status == 503 || (configuration.leaderMayChange && ["not_leader", "fenced"].contains(code)) {
                    wait = delay
                    failed("\(error)", permanent: false)
                } else {
                    wait = Self.operatorRetry
                    failed("\(error)", permanent: true)
                }
            } catch let error as JournalError {
                switch error {
                case .closed, .writerFailed:
                    failed("the standby's journal stopped: \(error)", permanent: true)
                    return
                default:
                    // Bytes that do not check out (damaged on the way, or a leader that is not
                    // this journal's): nothing was written; ask again.
                    wait = delay
                    failed("\(error)", permanent: false)
                }
            } catch {
                if Task.isCancelled { return }
                wait = delay
                failed("the leader is unreachable: \(error)", permanent: false)
            }
            delay = min(delay * 2, Self.retryDelays.upperBound)
            // Sleeps in short steps so that `stop()` is not held up by a long retry delay.
            let until = ContinuousClock.now + wait
            while ContinuousClock.now < until, !Task.isCancelled, !state.withLock({ $0.stopping }) {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Fetches and appends until caught up. While behind, the next fetch goes out as soon as
    /// a response is in, and travels while that response's batches are checked, written and
    /// fsynced; it says what is durable (`durable`) apart from where to read (`from`).
    private func catchUp(_ client: HTTPClient) async throws {
        let end = journal.nextOffset
        // The last batch's header, as the previous fetch left it; read from the journal only
        // when that does not describe its end (at start, after a failure).
        let known = state.withLock { $0.lastBatch }
        let last = known?.end == end ? known?.header : try journal.lastBatchHeader()
        var (header, raw) = try await Self.fetch(configuration, client: client, from: end, last: last,
                                                 durable: journal.committedOffset, wait: true)
        while true {
            try journal.noteSeenEpoch(header.leaderEpoch)
            let behind = !raw.isEmpty && header.nextOffset < header.leaderCommitted && !state.withLock({ $0.stopping })
            guard behind else {
                _ = try await journal.appendReplicated(raw)
                fetched(header, raw)
                return
            }
            let batches = raw
            let (nextFrom, lastHeader) = (raw.nextOffset, raw.lastHeader)
            async let appended = journal.appendReplicated(batches)
            let next = try await Self.fetch(configuration, client: client, from: nextFrom, last: lastHeader,
                                            durable: journal.committedOffset, wait: false)
            _ = try await appended
            fetched(header, raw)
            (header, raw) = next
        }
    }

    /// One fetch: the leader's answer checked and turned into batches to append.
    static func fetch(_ configuration: Configuration, client: HTTPClient, from: Offset, last: BatchHeader?,
                              durable: Offset, wait: Bool, backup: Bool = false) async throws -> (FetchResponseHeader, RawBatches) {
        let waitMs = wait ? configuration.fetchWait.components.seconds * 1000
            + configuration.fetchWait.components.attoseconds / 1_000_000_000_000_000 : 0
        var request = HTTPClientRequest(url: configuration.leaderURL + ReplicationProtocol.fetchPath
            + "?from=\(from.value)&durable=\(durable.value)&max_bytes=\(configuration.fetchBytes)"
            // No epoch when it holds no batch (nothing to diverge): a journal seeded at the
            // leader's oldest offset has none, and epoch 0 would not agree with a leader whose
            // epoch changed before that offset.
            + (last.map { "&epoch=\($0.leaderEpoch)" } ?? "")
            + "&wait_ms=\(waitMs)&standby=\(configuration.name)" + (last.map { "&last_crc=\($0.crc)" } ?? "")
            + (backup ? "&backup=1" : ""))
        request.headers.add(name: "Authorization", value: configuration.secret.authorization)
        let response = try await client.execute(request, timeout: .seconds(configuration.fetchWait.components.seconds + 30))
        // One batch may exceed the fetch size (up to the batch limit).
        let limit = ReplicationProtocol.headerBytes + max(configuration.fetchBytes, ReplicationProtocol.fetchBytesRange.upperBound)
            + BatchHeader.size + BatchHeader.payloadBytesLimit
        var body = try await response.body.collect(upTo: limit)
        guard response.status == .ok else { throw refusal(response.status.code, body) }
        var header = try FetchResponseHeader.read(from: &body)
        header.leaderCommitPoint = response.headers.first(name: ReplicationProtocol.commitPointHeader).flatMap(UInt64.init).map(Offset.init)
        guard header.firstOffset == from else {
            throw ReplicationError.badResponse("the leader answered from offset \(header.firstOffset), this standby asked from \(from)")
        }
        return (header, RawBatches(segmentBase: header.segmentBase, firstOffset: header.firstOffset,
                                   nextOffset: header.nextOffset, bytes: body))
    }

    /// An answer's batches were appended.
    private func fetched(_ header: FetchResponseHeader, _ raw: RawBatches) {
        state.withLock { state in
            state.leaderEpoch = max(state.leaderEpoch, header.leaderEpoch)
            if !raw.isEmpty { state.lastBatch = raw.lastHeader.map { (header: $0, end: raw.nextOffset) } }
        }
        if let point = header.leaderCommitPoint { configuration.onLeaderCommitted?(point) }
        following(leaderCommitted: header.leaderCommitted)
    }

    private func following(leaderCommitted: Offset) {
        let recovered = state.withLock { state in
            defer {
                state.phase = "following"
                state.leaderCommitted = leaderCommitted
            }
            return state.phase != "following"
        }
        if recovered {
            logger.notice("standby following its leader", metadata: [
                "replication.leader": "\(configuration.leaderURL)", "journal.offset": "\(journal.nextOffset)",
                "replication.leader_offset": "\(leaderCommitted)",
            ])
        }
    }

    /// Records a failure; logs it when it is new (a retry loop logs once, not every time).
    private func failed(_ message: String, permanent: Bool) {
        let phase = permanent ? "failing" : "retrying"
        let new = state.withLock { state in
            defer {
                state.phase = phase
                state.lastError = message
            }
            return state.lastError != message || state.phase != phase
        }
        guard new else { return }
        if permanent {
            logger.error("replication needs an operator; retrying every \(Self.operatorRetry)", metadata: ["error": "\(message)"])
        } else {
            logger.warning("replication interrupted; retrying", metadata: ["error": "\(message)"])
        }
    }

    /// This standby's view of its leader, for `GET /api/replication`.
    public func status() -> ReplicationStatus.Leader {
        let next = journal.nextOffset
        return state.withLock { state in
            ReplicationStatus.Leader(
                url: state.configuration.leaderURL, state: state.phase,
                leaderCommittedOffset: state.leaderCommitted?.value,
                lagEvents: state.leaderCommitted.map { $0.value > next.value ? $0.value - next.value : 0 },
                lastError: state.phase == "following" ? nil : state.lastError)
        }
    }
}
