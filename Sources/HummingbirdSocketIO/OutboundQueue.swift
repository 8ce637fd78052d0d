import Synchronization

/// A WebSocket connection's outbound items, bounded: producers (the server) never wait,
/// and the connection's writer takes everything queued at once, so that it writes a burst of
/// frames with one flush.
///
/// The writer is code woken by the queue (`setWaker`, then `take()`): the connection's event
/// loop, woken once per burst, with no task between the producer and the socket.
///
/// At most `capacity` items and `bytesCapacity` bytes (as `weigh` counts them) wait in the
/// queue, and no more than the process-wide `budget` allows; a producer that finds it full
/// gets `.dropped` (the server then closes the slow client). An item that arrives at an empty
/// queue is taken whatever its size, so that one large reply passes. The writer holds at most
/// one taken batch, so a connection holds at most twice `capacity` items and about twice
/// `bytesCapacity` bytes (the event-loop writer takes only while the socket is writable: NIO's
/// buffer then holds at most its high-water mark and a batch). Frames counted by bytes were
/// the missing bound: 1,024 history replies of 1.6 MB took one reader that never read to 1.6 GB.
///
/// Thread-safe (one lock): any number of producers, one writer.
public final class OutboundQueue<Item: Sendable>: Sendable {
    public enum YieldResult: Equatable, Sendable {
        case enqueued
        /// The queue is full; the item was not queued.
        case dropped
        /// The queue was finished; the item was not queued.
        case terminated
    }

    private struct State {
        var items: [Item] = []
        /// What `items` weigh, and taken from `budget`.
        var bytes = 0
        var finished = false
        /// Ended by `abort()`: what was queued is dropped, and the connection is to be dropped.
        var aborted = false
        /// Called when items arrive or the queue ends, unless a call is still unanswered by a
        /// `take()` (`wakePending`): one wake-up per burst.
        var waker: (@Sendable () -> Void)?
        var wakePending = false

        /// The waker to call now, if any (marks the call pending).
        mutating func wake() -> (@Sendable () -> Void)? {
            guard let waker, !wakePending else { return nil }
            wakePending = true
            return waker
        }
    }

    public let capacity: Int
    public let bytesCapacity: Int
    let weigh: @Sendable (Item) -> Int
    let budget: OutboundBudget?
    private let state = Mutex(State())

    public init(capacity: Int, bytesCapacity: Int = .max, budget: OutboundBudget? = nil,
                weigh: @escaping @Sendable (Item) -> Int = { _ in 0 }) {
        precondition(capacity > 0 && bytesCapacity > 0, "an outbound queue holds at least one item")
        self.capacity = capacity
        self.bytesCapacity = bytesCapacity
        self.budget = budget
        self.weigh = weigh
    }

    public func yield(_ item: Item) -> YieldResult {
        let bytes = weigh(item)
        let (result, waker) = state.withLock { state -> (YieldResult, (@Sendable () -> Void)?) in
            if state.finished { return (.terminated, nil) }
            guard state.items.count < capacity, state.items.isEmpty || state.bytes + bytes <= bytesCapacity else {
                return (.dropped, nil)
            }
            if let budget, !budget.reserve(bytes) { return (.dropped, nil) }
            state.items.append(item)
            state.bytes += bytes
            return (.enqueued, state.wake())
        }
        waker?()
        return result
    }

    /// Gives back what `state`'s items weighed (they were taken or dropped).
    private func release(_ state: inout State) {
        budget?.release(state.bytes)
        state.bytes = 0
    }

    /// Ends the queue: the writer takes what is queued, then `.finished`.
    public func finish() {
        let waker = state.withLock { state in
            state.finished = true
            return state.wake()
        }
        waker?()
    }

    /// Ends the queue at once, dropping what it holds (a client too slow to read them): the
    /// writer sees `isAborted` and drops the connection rather than wait to write.
    public func abort() {
        let waker = state.withLock { state in
            state.finished = true
            state.aborted = true
            state.items = []
            release(&state)
            // Even when a wake-up is pending: a writer waiting for writability has not taken
            // since, and may never be woken by the socket again.
            state.wakePending = true
            return state.waker
        }
        waker?()
    }

    /// Whether `abort()` ended the queue.
    public var isAborted: Bool { state.withLock { $0.aborted } }

    /// Makes `waker` the writer: it is called (outside the queue's lock, from the producer's
    /// thread) when items arrive or the queue ends, at most once until the writer's next
    /// `take()`; at once if there is something to take already.
    public func setWaker(_ waker: @escaping @Sendable () -> Void) {
        let wakeNow = state.withLock { state in
            state.waker = waker
            state.wakePending = false
            return !state.items.isEmpty || state.finished ? state.wake() : nil
        }
        wakeNow?()
    }

    /// What a woken writer takes.
    public enum Taken: Sendable {
        case items([Item])
        case empty
        /// Finished and empty: nothing more will come.
        case finished
    }

    /// Everything queued, oldest first, without waiting; the waker may be called again after
    /// this. The queue forgets its waker once it reports `.finished`.
    public func take() -> Taken {
        state.withLock { state in
            state.wakePending = false
            if !state.items.isEmpty {
                defer {
                    state.items = []
                    release(&state)
                }
                return .items(state.items)
            }
            if state.finished {
                state.waker = nil
                return .finished
            }
            return .empty
        }
    }
}

/// What the process holds for its clients' outbound queues and polling buffers together, in
/// bytes, against a limit: many slow readers at once cannot take the machine's memory. A
/// queue that cannot reserve an item's bytes drops it (and the server closes that client).
/// Thread-safe (an atomic).
public final class OutboundBudget: Sendable {
    public let limit: Int
    private let held = Atomic<Int>(0)

    public init(limit: Int) {
        precondition(limit > 0, "an outbound budget of \(limit) bytes")
        self.limit = limit
    }

    /// Bytes held now.
    public var bytes: Int { held.load(ordering: .relaxed) }
    public var isExceeded: Bool { bytes > limit }

    /// Takes `bytes` when they fit under the limit (an empty item always does).
    func reserve(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        let total = held.wrappingAdd(bytes, ordering: .relaxed).newValue
        guard total <= limit else {
            held.wrappingSubtract(bytes, ordering: .relaxed)
            return false
        }
        return true
    }

    func release(_ bytes: Int) {
        if bytes != 0 { held.wrappingSubtract(bytes, ordering: .relaxed) }
    }

    /// Counts a change that is not refused (a polling buffer's growth, checked after).
    func adjust(by delta: Int) {
        if delta != 0 { held.wrappingAdd(delta, ordering: .relaxed) }
    }
}
