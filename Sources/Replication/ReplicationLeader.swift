import Foundation
import Hummingbird
import Journal
import Logging
import NIOCore
import Synchronization

/// A leader's side of replication: answers standbys' fetches (FORMAT.md §11) from its
/// journal, and keeps what it learns of each standby for `status()`.
///
/// A fetch reads whole committed batches (`Journal.readRaw`) and sends them as they are on
/// disk: no per-event work, so a far-behind standby catches up at the speed of large reads.
/// Thread-safe: the standbys' records sit behind one `Mutex`, held for bookkeeping only.
public final class ReplicationLeader: Sendable {
    let journal: Journal
    let secret: ReplicationSecret?
    /// Standbys that must have an event durable before it counts as committed (0: none).
    public let syncReplicas: Int
    let logger: Logger
    private let state: Mutex<State>

    /// What this node is in replication.
    public enum Role: Sendable, Equatable {
        /// It answers standbys' fetches and takes commands.
        case leading
        /// A standby of the leader at this URL: no fetches answered.
        case following(String)
        /// It learnt of a newer leader epoch: it takes no more writes and answers no fetches.
        case fenced(epoch: UInt32)
    }

    struct State {
        var role: Role
        /// With `syncReplicas`: everything below this is durable on that many standbys (or was
        /// committed before this server started). Always where a batch starts: a standby's
        /// durable end is.
        var replicated: Offset
        var replicationWaiters: [UInt64: (offset: Offset, continuation: CheckedContinuation<Void, Never>)] = [:]
        var standbys: [String: Standby] = [:]
        var nextWaiter: UInt64 = 0
        var stopped = false
    }

    /// What the leader knows of one standby, from its fetches.
    struct Standby {
        var durable: Offset
        var fetchesInFlight = 0
        var lastFetch: ContinuousClock.Instant
        var lastCaughtUp: ContinuousClock.Instant?
    }

    /// - Parameters:
    ///   - secret: nil refuses every standby (`replication_disabled`).
    ///   - syncReplicas: how many standbys must have an event durable before it is committed
    ///     (`waitForReplication`); what the journal held at start counts as committed.
    ///   - role: `.leading`, or `.following` on a standby (`promote` makes it lead).
    public init(journal: Journal, secret: ReplicationSecret?, role: Role = .leading, syncReplicas: Int = 0,
                onFenced: @escaping @Sendable (UInt32) -> Void = { _ in }, logger: Logger) {
        self.journal = journal
        self.secret = secret
        self.syncReplicas = syncReplicas
        self.onFenced = onFenced
        self.logger = logger
        state = Mutex(State(role: role, replicated: journal.committedOffset))
    }

    /// Called once when this leader learns of a newer epoch (the server then refuses writes).
    let onFenced: @Sendable (UInt32) -> Void

    public var role: Role { state.withLock { $0.role } }

    /// This node's leader epoch: the newest its journal knows.
    public var epoch: UInt32 { journal.leaderEpochs.current }

    /// A standby becomes the leader: what its journal holds counts as committed, and it
    /// answers fetches from now on (the caller has begun its new epoch).
    public func lead() {
        state.withLock { state in
            state.role = .leading
            state.replicated = max(state.replicated, journal.committedOffset)
            state.standbys = [:]
        }
    }

    /// This node learnt that a leader of a newer epoch exists: it stops taking writes.
    /// - Returns: whether it was leading (and is fenced now).
    @discardableResult
    public func fence(newerEpoch: UInt32, reason: String) -> Bool {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>]? in
            guard state.role == .leading, newerEpoch > journal.leaderEpochs.current else { return nil }
            state.role = .fenced(epoch: newerEpoch)
            // Commands waiting for standbys fail: nothing more commits here.
            defer { state.replicationWaiters = state.replicationWaiters.filter { $0.value.offset == Offset(UInt64.max) } }
            return state.replicationWaiters.values.filter { $0.offset != Offset(UInt64.max) }.map(\.continuation)
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume() }
        logger.critical("fenced: a newer leader exists; this node takes no more writes", metadata: [
            "replication.epoch": "\(epoch)", "replication.newer_epoch": "\(newerEpoch)", "replication.reason": "\(reason)",
        ])
        onFenced(newerEpoch)
        return true
    }

    // MARK: Synchronous replication

    /// With `syncReplicas`: everything below this is durable on that many standbys. On a
    /// standby, which commits what it copies, the largest offset; on a fenced leader, where it
    /// stood when fenced: what it wrote past that point was never committed, and never will be
    /// here (a new leader may not have it).
    public var replicatedOffset: Offset {
        state.withLock { state in
            if case .following = state.role { return Offset(UInt64.max) }
            return state.replicated
        }
    }

    /// Waits until `syncReplicas` standbys have every event below `offset + 1` durable (on a
    /// standby: at once).
    ///
    /// A fenced or stopping leader commits nothing more, but its readers of the commit point
    /// (the tailer, History) keep serving what is committed until the server stops them: for
    /// them the wait goes on until their task is cancelled. (It once ended with an error, and
    /// a fenced leader's tailer then stopped, which stopped the server.)
    /// - Throws: `CancellationError` when the task is cancelled.
    public func waitForReplication(of offset: Offset) async throws {
        while true {
            await park(offset) { Self.committed(offset, in: $0) }
            if state.withLock({ Self.committed(offset, in: $0) }) { return }
            // Woken by a fence or a stop: wait on, unless cancelled.
            try Task.checkCancellation()
        }
    }

    /// Whether `offset` is committed as far as standbys are concerned.
    private static func committed(_ offset: Offset, in state: borrowing State) -> Bool {
        if case .following = state.role { return true }
        return state.role == .leading && state.replicated > offset
    }

    /// Waits until `done` holds, checked now and each time a waiter for `offset` is resumed
    /// (replication past it, `stop()`), or the task is cancelled.
    private func park(_ offset: Offset, until done: @escaping (borrowing State) -> Bool) async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if done(state) || Task.isCancelled { return true }
                    state.replicationWaiters[id] = (offset, continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.replicationWaiters.removeValue(forKey: id) }?.continuation.resume()
        }
    }

    /// The offset `syncReplicas` standbys have reached: the `syncReplicas`-th highest durable
    /// end, and never below what it was.
    private static func replicated(_ state: State, syncReplicas: Int) -> Offset {
        let durable = state.standbys.values.map(\.durable).sorted(by: >)
        guard syncReplicas > 0, durable.count >= syncReplicas else { return state.replicated }
        return max(state.replicated, durable[syncReplicas - 1])
    }

    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/replication/:version/fetch") { request, context in
            await self.fetch(request, version: context.parameters.get("version") ?? "")
        }
        router.post("/replication/:version/fence") { request, context in
            await self.fenceRequest(request, version: context.parameters.get("version") ?? "")
        }
    }

    /// Ends the fetches held for new batches and the waits for replication (the server is
    /// stopping).
    public func stop() {
        let waiting = state.withLock { state in
            state.stopped = true
            defer { state.replicationWaiters.removeAll() }
            return state.replicationWaiters.values.map(\.continuation)
        }
        for waiter in waiting { waiter.resume() }
    }

    // MARK: Fetch

    /// The checks every replication request passes (fetch, fence, forwarded commands,
    /// seeding, promotion): a secret configured and given, the version, and with `leading`,
    /// a node that leads. Nil when the request may go on.
    public func refusal(of request: Request, version: String = "v1", leading: Bool = false) -> Response? {
        guard let secret else {
            return Self.error(.forbidden, "replication_disabled",
                              "this server takes no standbys: start it with --replication-secret-file")
        }
        guard version == "v1" else {
            return Self.error(.badRequest, "unsupported_version",
                              "this leader speaks replication protocol v1, the standby asked for \(version)")
        }
        guard secret.matches(authorization: request.headers[.authorization]) else {
            return Self.error(.unauthorized, "unauthorized", "the Authorization header does not carry the replication secret")
        }
        if leading, role != .leading {
            return Self.error(.conflict, "not_leader", "this node does not lead (it is \(status().role))")
        }
        return nil
    }

    /// `POST /replication/v1/fence?epoch=E`: a newly promoted node tells its former leader.
    func fenceRequest(_ request: Request, version: String) async -> Response {
        if let refusal = refusal(of: request, version: version) { return refusal }
        guard let text = request.uri.queryParameters.get("epoch"), let newer = UInt32(text) else {
            return Self.error(.badRequest, "invalid_request", "epoch (the new leader's epoch, an integer) is required")
        }
        fence(newerEpoch: newer, reason: "told by the leader of epoch \(newer)")
        // Fenced now or before, or a standby: either way it takes no writes.
        return Self.json(FenceAnswer(fenced: role != .leading, epoch: epoch))
    }

    func fetch(_ request: Request, version: String) async -> Response {
        if let refusal = refusal(of: request, version: version) { return refusal }
        switch role {
        case .leading: break
        case .following(let leader):
            return Self.error(.conflict, "not_leader", "this node is a standby of \(leader): fetch from the leader")
        case .fenced(let newer):
            return Self.error(.conflict, "fenced", "this node's leader epoch \(epoch) was superseded by epoch \(newer): it is no longer the leader")
        }
        let query = request.uri.queryParameters
        guard let fromText = query.get("from"), let from = UInt64(fromText) else {
            return Self.error(.badRequest, "invalid_request", "from (the standby's journal end, an integer) is required")
        }
        func number(_ name: String, default value: Int) -> Int? {
            guard let text = query.get(name) else { return value }
            return Int(text).flatMap { $0 >= 0 ? $0 : nil }
        }
        guard let maxBytes = number("max_bytes", default: ReplicationProtocol.fetchBytesDefault),
              let waitMs = number("wait_ms", default: 0),
              query.get("epoch").map({ UInt32($0) != nil }) ?? true else {
            return Self.error(.badRequest, "invalid_request", "max_bytes, wait_ms and epoch must be non-negative integers")
        }
        let name = query.get("standby") ?? "unnamed"
        guard (1...64).contains(name.utf8.count),
              name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }) else {
            return Self.error(.badRequest, "invalid_request", "standby must be 1-64 characters of A-Z a-z 0-9 . _ -")
        }
        let bytes = min(max(maxBytes, ReplicationProtocol.fetchBytesRange.lowerBound), ReplicationProtocol.fetchBytesRange.upperBound)
        let wait = min(Duration.milliseconds(waitMs), ReplicationProtocol.fetchWaitMax)
        let offset = Offset(from)
        // What the standby has durable: `durable` when it reads ahead of it (while catching up),
        // else `from`.
        let durableText = query.get("durable")
        guard let durable = durableText.map({ UInt64($0) }) ?? from, durable <= from else {
            return Self.error(.badRequest, "invalid_request", "durable must be an integer no greater than from")
        }
        // Epochs: a standby that has seen a newer leader fences this one; a standby whose last
        // epoch ended earlier here holds records this leader never had past that end.
        let standbyEpoch = query.get("epoch").flatMap { UInt32($0) } ?? 0
        if standbyEpoch > epoch {
            fence(newerEpoch: standbyEpoch, reason: "standby \(name) holds batches of epoch \(standbyEpoch)")
            return Self.error(.conflict, "fenced", "the standby holds batches of leader epoch \(standbyEpoch), newer than this node's \(epoch): this node is no longer the leader")
        }
        if let end = journal.leaderEpochs.end(of: standbyEpoch), offset > end {
            return Self.error(.conflict, "diverged",
                              "the standby's journal (last epoch \(standbyEpoch)) goes on past \(end), where that epoch ended on this leader: restart the standby to cut its tail back to \(end)",
                              truncateTo: end)
        }
        // Same epochs, other bytes (two nodes promoted to one epoch, each unaware of the
        // other): the standby's last batch must be this leader's batch ending at `from`.
        if let crcText = query.get("last_crc"), let crc = UInt32(crcText), offset > journal.earliestOffset,
           offset <= journal.committedOffset {
            let mine: BatchHeader?
            do { mine = try journal.batchHeader(endingAt: offset) } catch {
                return Self.error(.internalServerError, "internal", "reading the leader's journal failed: \(error)")
            }
            if mine?.crc != crc {
                // Not cut automatically: which node's records to keep is an operator's call.
                let start = journal.leaderEpochs.entries.last { $0.start.value < offset.value }?.start ?? .zero
                return Self.error(.conflict, "conflict",
                                  "the standby's last batch (ending at \(offset), leader epoch \(standbyEpoch)) is not this leader's: both wrote under one epoch. To keep this leader's records, stop the standby and run `chatlog journal truncate --to \(start)` on its journal",
                                  truncateTo: start)
            }
        }
        began(name, durable: Offset(durable))
        defer { ended(name) }
        do {
            var raw = try journal.readRaw(from: offset, maxBytes: bytes)
            if raw.isEmpty && wait > .zero {
                await waitForCommit(of: offset, atMost: wait)
                raw = try journal.readRaw(from: offset, maxBytes: bytes)
            }
            return response(raw)
        } catch .offsetOutOfRange(let requested, let earliest, let next) where requested > next {
            // Where the standby's last epoch began here, or this leader's end: a cut that the
            // operator may make (never made automatically: the records are the standby's alone).
            let hint = journal.leaderEpochs.entries.first { $0.epoch == standbyEpoch && $0.epoch > 0 }?.start ?? next
            return Self.error(.conflict, "offset_ahead",
                              "the standby's journal ends at \(requested), past this leader's end \(next) (earliest \(earliest)): it holds records this leader never committed. To keep this leader's records, stop the standby and run `chatlog journal truncate --to \(hint)` on its journal",
                              truncateTo: hint)
        } catch .offsetOutOfRange(let requested, let earliest, _) {
            return Self.error(.gone, "out_of_range",
                              "offset \(requested) is no longer retained here (the journal starts at \(earliest)), so the standby cannot catch up from it: stop the standby, empty its journal directory and start it again (it then seeds itself from this leader's room state)")
        } catch .notBatchBoundary(let requested, let base) {
            return Self.error(.conflict, "not_batch_boundary",
                              "offset \(requested) is inside this leader's batch at \(base): the standby's journal is not a copy of this one")
        } catch .closed, .writerFailed {
            return Self.error(.serviceUnavailable, "unavailable", "the leader's journal is closing or failed")
        } catch {
            logger.error("replication fetch failed", metadata: ["replication.standby": "\(name)", "error": "\(error)"])
            return Self.error(.internalServerError, "internal", "reading the leader's journal failed: \(error)")
        }
    }

    private func response(_ raw: RawBatches) -> Response {
        var body = ByteBufferAllocator().buffer(capacity: ReplicationProtocol.headerBytes + raw.bytes.readableBytes)
        FetchResponseHeader(leaderEpoch: epoch, segmentBase: raw.segmentBase, firstOffset: raw.firstOffset,
                            nextOffset: raw.nextOffset, leaderCommitted: journal.committedOffset,
                            leaderEarliest: journal.earliestOffset).write(to: &body)
        body.writeImmutableBuffer(raw.bytes)
        return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: body))
    }

    /// An error answer: `{"error": {"code", "message"}}` (FORMAT.md §11).
    public static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String, truncateTo: Offset? = nil) -> Response {
        json(ErrorBody(error: .init(code: code, message: message, truncateTo: truncateTo?.value)), status: status)
    }

    /// A JSON answer, snake_case keys.
    public static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let body = (try? ReplicationJSON.encoder.encode(value)) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// Waits until `offset` commits, `limit` passes, or the leader stops.
    private func waitForCommit(of offset: Offset, atMost limit: Duration) async {
        let journal = self.journal
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = try? await journal.waitForCommit(of: offset) }
            group.addTask { try? await Task.sleep(for: limit) }
            group.addTask { await self.stopped() }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns when the leader stops (or the task is cancelled): no offset is ever replicated
    /// past the largest.
    private func stopped() async {
        await park(Offset(UInt64.max)) { $0.stopped }
    }

    // MARK: Standbys

    private func began(_ name: String, durable: Offset) {
        let committed = journal.committedOffset
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            let now = ContinuousClock.now
            // A claim past this leader's end (refused as offset_ahead) counts for nothing.
            let claimed = min(durable, committed)
            var standby = state.standbys[name] ?? Standby(durable: claimed, lastFetch: now)
            if standby.fetchesInFlight == 0 && state.standbys[name] == nil {
                logger.notice("standby connected", metadata: ["replication.standby": "\(name)", "journal.offset": "\(durable)"])
            }
            standby.durable = claimed
            standby.lastFetch = now
            standby.fetchesInFlight += 1
            if durable >= committed { standby.lastCaughtUp = now }
            state.standbys[name] = standby
            let replicated = Self.replicated(state, syncReplicas: syncReplicas)
            guard replicated > state.replicated else { return [] }
            state.replicated = replicated
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.replicationWaiters where waiter.offset < replicated {
                ready.append(waiter.continuation)
                state.replicationWaiters[id] = nil
            }
            return ready
        }
        for waiter in ready { waiter.resume() }
    }

    private func ended(_ name: String) {
        state.withLock { state in
            state.standbys[name]?.fetchesInFlight -= 1
            state.standbys[name]?.lastFetch = .now
        }
    }

    /// A standby counts as connected while a fetch of its is held, or within this long of its
    /// last one.
    public static let connectedWithin: Duration = .seconds(5)

    /// What the leader knows of its standbys, for `GET /api/replication`.
    public func status() -> ReplicationStatus {
        let committed = journal.committedOffset
        let now = ContinuousClock.now
        let standbys = state.withLock { state in
            state.standbys.map { name, standby in
                ReplicationStatus.Standby(
                    name: name,
                    connected: standby.fetchesInFlight > 0 || now - standby.lastFetch < Self.connectedWithin,
                    durableOffset: standby.durable.value,
                    lagEvents: committed.value > standby.durable.value ? committed.value - standby.durable.value : 0,
                    lagBytes: journal.bytes(after: standby.durable),
                    lagSeconds: standby.durable >= committed ? 0 : standby.lastCaughtUp.map { (now - $0).inSeconds },
                    lastFetchSecondsAgo: (now - standby.lastFetch).inSeconds)
            }.sorted { $0.name < $1.name }
        }
        let role = switch self.role {
        case .leading: "leader"
        case .following: "standby"
        case .fenced: "fenced"
        }
        var status = ReplicationStatus(role: role, epoch: epoch, committedOffset: committed.value, leader: nil, standbys: standbys)
        if syncReplicas > 0 {
            status.syncReplicas = syncReplicas
            status.replicatedOffset = replicatedOffset.value
        }
        return status
    }
}

/// `GET /api/replication`: a node's role and, on a leader, its standbys.
public struct ReplicationStatus: Sendable, Codable, Equatable {
    public struct Standby: Sendable, Codable, Equatable {
        public var name: String
        public var connected: Bool
        /// Everything below this is durable on the standby.
        public var durableOffset: UInt64
        public var lagEvents: UInt64
        /// About how many bytes of batches the standby lacks (within 64 KiB).
        public var lagBytes: Int64
        /// Seconds since the standby last had everything the leader had; 0 when it has; nil
        /// when it never had.
        public var lagSeconds: Double?
        public var lastFetchSecondsAgo: Double
    }

    /// A standby's view of its leader.
    public struct Leader: Sendable, Codable, Equatable {
        public var url: String
        public var state: String
        public var leaderCommittedOffset: UInt64?
        public var lagEvents: UInt64?
        public var lastError: String?
    }

    public var role: String
    public var epoch: UInt32
    public var committedOffset: UInt64
    public var leader: Leader?
    public var standbys: [Standby]
    /// On a leader with synchronous replicas: how many, and the offset they have all reached
    /// (what is below it is committed).
    public var syncReplicas: Int?
    public var replicatedOffset: UInt64?

    public init(role: String, epoch: UInt32, committedOffset: UInt64, leader: Leader?, standbys: [Standby]) {
        self.role = role
        self.epoch = epoch
        self.committedOffset = committedOffset
        self.leader = leader
        self.standbys = standbys
    }
}

/// The JSON of an error answer (FORMAT.md §11).
struct ErrorBody: Codable {
    struct Detail: Codable {
        var code: String
        var message: String
        /// With `diverged`: where the standby's journal must be cut back to.
        var truncateTo: UInt64?
    }

    var error: Detail
}

/// The answer to a fence request.
struct FenceAnswer: Codable {
    var fenced: Bool
    var epoch: UInt32
}

/// JSON as the HTTP API writes it: snake_case keys.
public enum ReplicationJSON {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}
