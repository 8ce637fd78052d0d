import HummingbirdSocketIO
import Journal
import SocketIO

/// What waits for commands' events to be applied: tasks (`applied(_:)` suspends them) and
/// the acks of sends, which the tailer sends itself so that a sending connection never
/// suspends per message. Keeps the position it has settled up to, so that a waiter is either
/// registered before a settle that covers it or answered at once, never missed.
///
/// A value type; not thread-safe on its own (`LiveRooms` keeps it under a lock of its own).
struct CommitWaiters: ~Copyable {
    typealias Continuation = CheckedContinuation<Result<Void, ChatFailure>, Never>

    private var waiters: [(offset: Offset, continuation: Continuation, since: Duration)] = []
    /// Acks to send once an offset is applied, in offset order (registered in about that order:
    /// each goes in from the end, nearly always at it). A settle takes a prefix.
    private var answers: [(offset: Offset, answer: PendingAnswer, since: Duration)] = []
    /// Set when the tailer stopped (the journal failed or closed): every waiter gets it at once.
    private(set) var failure: String?
    /// Everything below it is settled (applied, fanned out, acks sent).
    private(set) var position: Offset

    /// When each waiter came is kept as the time since this origin: `ContinuousClock.Instant`
    /// is not a frozen type, so every element holding one was copied through the runtime's
    /// value witnesses (the settle's walk over waiting acks cost more than the acks); a
    /// `Duration` is frozen, and an element is then read in place.
    private let origin = ContinuousClock.now

    init(position: Offset) {
        self.position = position
    }

    private var now: Duration { .now - origin }

    /// Registers a task waiting for `offset`, or says at once how it ends.
    mutating func wait(for offset: Offset, _ continuation: Continuation) -> Result<Void, ChatFailure>? {
        if offset < position { return .success(()) }
        if let failure { return .failure(.unavailable(failure)) }
        waiters.append((offset, continuation, now))
        return nil
    }

    /// Registers an ack to send once `offset` is applied, or sends it now.
    mutating func answer(_ answer: PendingAnswer, when offset: Offset, server: SocketIOServer) {
        if offset < position {
            answer.succeed(on: server)
        } else if let failure {
            answer.fail(failure, on: server)
        } else {
            var index = answers.endIndex
            while index > answers.startIndex, answers[index - 1].offset > offset { index -= 1 }
            answers.insert((offset, answer, now), at: index)
        }
    }

    /// Everything below `end` is applied: the acks to send now, in offset order, and the
    /// tasks to resume. The caller sends the acks after releasing the lock, so that senders
    /// registering theirs never wait while the tailer encodes a batch's acks; a send that
    /// registers meanwhile and finds its offset settled is answered at once by itself, so two
    /// acks of one socket may then leave in the other order (as a Socket.IO server's acks may:
    /// each answers its own id).
    mutating func settle(below end: Offset) -> (acks: [EncodedAck], ready: [Continuation]) {
        position = max(position, end)
        // The settled prefix, read in place: with many sends in flight most answers wait for
        // later groups, and a walk that copied each one (its socket's strings, its event name)
        // on every settle cost more than the acks themselves.
        var settled = 0
        while settled < answers.count, answers[settled].offset < end { settled += 1 }
        var acks: [EncodedAck] = []
        if settled > 0 {
            acks.reserveCapacity(settled)
            for index in 0..<settled {
                if let ack = answers[index].answer.ack { acks.append(ack) }
            }
            answers.removeFirst(settled)
        }
        var ready: [Continuation] = []
        waiters.removeAll { waiter in
            guard waiter.offset < end else { return false }
            ready.append(waiter.continuation)
            return true
        }
        return (acks, ready)
    }

    /// Nothing more will be applied: every waiter, now and later, fails with `reason`.
    mutating func fail(_ reason: String, server: SocketIOServer) -> [Continuation] {
        if failure == nil { failure = reason }
        for pending in answers { pending.answer.fail(reason, on: server) }
        answers.removeAll()
        defer { waiters.removeAll() }
        return waiters.map(\.continuation)
    }

    /// Gives up on what has waited since before `cutoff` (everything without one): the acks
    /// say `unavailable` with `reason`; the tasks to resume are returned.
    mutating func expire(waitingSince cutoffInstant: ContinuousClock.Instant?, reason: String, server: SocketIOServer) -> [Continuation] {
        let cutoff = cutoffInstant.map { $0 - origin }
        answers.removeAll { pending in
            guard cutoff.map({ pending.since < $0 }) ?? true else { return false }
            pending.answer.fail(reason, on: server)
            return true
        }
        var expired: [Continuation] = []
        waiters.removeAll { waiter in
            guard cutoff.map({ waiter.since < $0 }) ?? true else { return false }
            expired.append(waiter.continuation)
            return true
        }
        return expired
    }
}

/// A send's ack, sent by the tailer once the send's offset is applied: `{ok: true, id}`, the
/// message's id (`ChatWire.ackFields` of a send), written straight into the packet.
struct PendingAnswer: Sendable {
    let socket: SocketRef
    /// The client's ack id; nil: nothing to send on success, an `error` event on failure.
    let ackID: UInt64?
    let event: String
    /// The message's id (nil: the ack carries `ok` alone).
    let messageID: Offset?

    func succeed(on server: SocketIOServer) {
        guard let ack else { return }
        server.ack([ack])
    }

    /// The ack that says it succeeded; nil without an ack id.
    var ack: EncodedAck? {
        ackID.map { id in
            EncodedAck(socket, id: id) { output in
                output.beginObject()
                output.key("ok")
                output.bool(true)
                if let messageID {
                    output.key("id")
                    output.integer(Int64(messageID.value))
                }
                output.endObject()
            }
        }
    }

    func fail(_ reason: String, on server: SocketIOServer) {
        ChatWire.refuse(socket, event: event, ackID: ackID, .unavailable(reason), server: server)
    }
}
