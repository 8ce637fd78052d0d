import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import SocketIO
import Synchronization

/// The transports' side of the server: handshakes, polls, POSTs (each session's POSTed events
/// performed in order by a worker of its own) and WebSocket frames, each turned into the state
/// machines' work under the lock and the application calls it makes.
extension SocketIOServer {
    /// Queues the handler calls of a polling POST for the session's worker; returns at once
    /// unless `postsPendingMax` payloads are waiting already.
    func enqueuePosted(sid: String, _ calls: [AppCall]) async {
        guard !calls.isEmpty else { return }
        enum Outcome { case startWorker, queued, full }
        let outcome = postInboxes.withLock { inboxes -> Outcome in
            guard var inbox = inboxes[sid] else {
                inboxes[sid] = PostInbox(pending: [calls])
                return .startWorker
            }
            inbox.pending.append(calls)
            inboxes[sid] = inbox
            return inbox.pending.count > Self.postsPendingMax ? .full : .queued
        }
        switch outcome {
        case .startWorker: postWork.continuation.yield(sid)
        case .queued: break
        case .full:
            await withCheckedContinuation { continuation in
                let waiting = postInboxes.withLock { inboxes -> Bool in
                    guard let inbox = inboxes[sid], inbox.pending.count > Self.postsPendingMax else { return false }
                    inboxes[sid]?.waiters.append(continuation)
                    return true
                }
                if !waiting { continuation.resume() }
            }
        }
    }

    /// Performs a WebSocket frame's calls after what the session's earlier POSTs delivered
    /// (a client that just upgraded may have POSTed events still queued): queued behind them
    /// while its worker runs, at once otherwise.
    /// - Returns: whether POSTed work was still queued (false: none is, or none was looked for).
    @discardableResult
    func performAfterPosted(sid: String, _ calls: [AppCall]) async -> Bool {
        guard !calls.isEmpty else { return true }
        let queued = postInboxes.withLock { inboxes in
            guard inboxes[sid] != nil else { return false }
            inboxes[sid]?.pending.append(calls)
            return true
        }
        if !queued { await perform(calls) }
        return queued
    }

    /// A session's worker: performs its queued calls in order until none is left.
    func drainPosts(_ sid: String) async {
        while true {
            let (batch, waiters) = postInboxes.withLock { inboxes -> ([[AppCall]], [CheckedContinuation<Void, Never>]) in
                guard let inbox = inboxes[sid], !inbox.pending.isEmpty else {
                    let waiters = inboxes[sid]?.waiters ?? []
                    inboxes[sid] = nil
                    return ([], waiters)
                }
                inboxes[sid] = PostInbox()
                return (inbox.pending, inbox.waiters)
            }
            for waiter in waiters { waiter.resume() }
            if batch.isEmpty { return }
            for calls in batch { await perform(calls) }
        }
    }

    // MARK: Handshake and transports

    enum HandshakeResult {
        case opened(sid: String, open: EnginePacket)
        case full
    }

    /// - Parameter client: the client's address (`SocketIOEndpoint.clientAddress`), for the
    ///   per-address cap on anonymous sessions.
    func handshake(transport: EngineSession.Transport, client: String) -> HandshakeResult {
        state.withLock { $0.handshake(transport: transport, client: client) }
    }

    enum PollResult {
        case body(String)
        case unknownSession
        case rejected
    }

    /// How a poll ended, and the application calls its request must carry out.
    struct PollOutcome: Sendable {
        var result: PollResult
        var calls: [AppCall] = []
    }

    /// A GET on a polling session: answers at once or waits for packets. Deciding to hold the
    /// poll and registering it happen under one lock, so no packet can slip between them.
    func poll(sid: String, token: String) async -> (PollResult, [AppCall]) {
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<PollOutcome, Never>) in
            if let immediate = state.withLock({ $0.startPoll(sid: sid, token: token, continuation: continuation) }) {
                continuation.resume(returning: immediate)
            }
        }
        if case .rejected = outcome.result { await websocketFlushed(sid: sid) }
        return (outcome.result, outcome.calls)
    }

    /// A POST on a polling session.
    func post(sid: String, body: [UInt8]) -> (ok: Bool, known: Bool, calls: [AppCall]) {
        state.withLock { $0.post(sid: sid, body: body) }
    }

    /// A WebSocket opened: a new session (no sid) or an upgrade probe for an existing one.
    func attachWebSocket(sid: String?, client: String, queue: OutboundQueue<OutboundItem>) -> (sid: String, probe: Bool)? {
        state.withLock { $0.attachWebSocket(sid: sid, client: client, queue: queue) }
    }

    /// A frame from a WebSocket; `probe` while it is still upgrading.
    func frame(sid: String, packet: EnginePacket, probe: Bool) -> (probe: Bool, calls: [AppCall]) {
        state.withLock { $0.frame(sid: sid, packet: packet, probe: probe) }
    }

    func websocketClosed(sid: String, probe: Bool) -> [AppCall] {
        state.withLock { $0.websocketClosed(sid: sid, probe: probe) }
    }

    /// Waits until the frames queued so far on the session's WebSocket are written (or the
    /// session ends). A poll refused because the session moved to WebSocket is answered only
    /// then, which keeps causal order across the two connections: the client reads the
    /// `3probe` sent before the upgrade completed before it reads the 400.
    func websocketFlushed(sid: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            if !state.withLock({ $0.waitForFlush(sid: sid, continuation: continuation) }) { continuation.resume() }
        }
    }

    /// A WebSocket writer reached a `barrier`.
    func writesFlushed(sid: String) {
        state.withLock { $0.writesFlushed(sid: sid) }
    }

    /// The held poll's request was cancelled (its client went away): end the wait so the
    /// request task finishes, and let the next poll take its place.
    func pollAbandoned(sid: String, token: String) {
        state.withLock { $0.pollAbandoned(sid: sid, token: token) }
    }
}
