import Foundation
import HTTPTypes
import Hummingbird
import Journal
import Logging
import NIOCore

/// The leader's routes: standbys' fetches (held until there is something to send) and fences,
/// each behind the checks every replication request passes.
extension ReplicationLeader {
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/replication/:version/fetch") { request, context in
            await self.fetch(request, version: context.parameters.get("version") ?? "")
        }
        router.post("/replication/:version/fence") { request, context in
            await self.fenceRequest(request, version: context.parameters.get("version") ?? "")
        }
    }

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
        // A backup (`chatlog backup`) reads like a standby but is none: it is not listed, not
        // counted for synchronous replicas or the in-sync set, and never held.
        let isBackup = query.get("backup") == "1"
        // No epoch: the reader holds no batch (an empty or freshly seeded journal, a backup's
        // first fetch), so it cannot have diverged wherever it starts.
        let holdsBatches = query.get("epoch") != nil
        if standbyEpoch > epoch {
            fence(newerEpoch: standbyEpoch, reason: "standby \(name) holds batches of epoch \(standbyEpoch)")
            return Self.error(.conflict, "fenced", "the standby holds batches of leader epoch \(standbyEpoch), newer than this node's \(epoch): this node is no longer the leader")
        }
        if holdsBatches, let end = journal.leaderEpochs.end(of: standbyEpoch), offset > end {
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
        if !isBackup { began(name, durable: Offset(durable)) }
        defer { if !isBackup { ended(name) } }
        do {
            var raw = try journal.readRaw(from: offset, maxBytes: bytes)
            if isBackup {
                return response(raw, commitPoint: state.withLock { $0.inSync == nil } ? nil : commitPoint)
            }
            // In a cluster a standby commits only below the leader's commit point, so a held
            // fetch also ends when that moves past what the standby was last told.
            let told = state.withLock { $0.inSync == nil ? nil : $0.standbys[name]?.toldCommitPoint ?? .zero }
            if raw.isEmpty && wait > .zero && !(told.map { commitPoint > $0 } ?? false) {
                await waitForCommit(of: offset, atMost: wait, orCommitPointPast: told)
                raw = try journal.readRaw(from: offset, maxBytes: bytes)
            }
            // Outside a cluster, standbys commit what they copy: no commit point is sent.
            let committed = told == nil ? nil : commitPoint
            if let committed { state.withLock { $0.standbys[name]?.toldCommitPoint = committed } }
            return response(raw, commitPoint: committed)
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

    /// A fetch's answer: `raw`, and in cluster mode the leader's commit point (FORMAT.md §11).
    private func response(_ raw: RawBatches, commitPoint: Offset?) -> Response {
        var body = ByteBufferAllocator().buffer(capacity: ReplicationProtocol.headerBytes + raw.bytes.readableBytes)
        FetchResponseHeader(leaderEpoch: epoch, segmentBase: raw.segmentBase, firstOffset: raw.firstOffset,
                            nextOffset: raw.nextOffset, leaderCommitted: journal.committedOffset,
                            leaderEarliest: journal.earliestOffset).write(to: &body)
        body.writeImmutableBuffer(raw.bytes)
        var headers: HTTPFields = [.contentType: "application/octet-stream"]
        if let commitPoint, let name = HTTPField.Name(ReplicationProtocol.commitPointHeader) {
            headers[name] = String(commitPoint.value)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
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

    /// How long a held fetch waits for new batches after the commit point moved before it
    /// answers with the commit point alone (a standby's readers see an event at most this much
    /// later; under load the next batches come first and carry it).
    static let commitPointLinger: Duration = .milliseconds(5)

    /// Waits until `offset` commits, `limit` passes, the leader stops, or (with `told`) the
    /// commit point passes `told`.
    private func waitForCommit(of offset: Offset, atMost limit: Duration, orCommitPointPast told: Offset? = nil) async {
        let journal = self.journal
        let syncReplicas = self.syncReplicas
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = try? await journal.waitForCommit(of: offset) }
            if let told {
                group.addTask {
                    await self.park(told) { state in
                        let end = Self.replicatedEnd(state, syncReplicas: syncReplicas)
                        return min(end, journal.committedOffset) > told || state.stopped
                    }
                    // Under load new batches come within this and carry the commit point
                    // anyway: one answer instead of two.
                    try? await Task.sleep(for: Self.commitPointLinger)
                }
            }
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

}
