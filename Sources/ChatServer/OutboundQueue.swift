import Synchronization

/// A WebSocket connection's outbound items, bounded: producers (the server) never wait,
/// and the connection's writer takes everything queued at once, so that it writes a burst of
/// frames with one flush.
///
/// At most `capacity` items wait in the queue; a producer that finds it full gets `.dropped`
/// (the server then closes the slow client). The writer holds at most one taken batch, so a
/// connection holds at most twice `capacity` items.
final class OutboundQueue<Item: Sendable>: Sendable {
    enum YieldResult: Equatable {
        case enqueued
        /// The queue is full; the item was not queued.
        case dropped
        /// The queue was finished; the item was not queued.
        case terminated
    }

    private struct State {
        var items: [Item] = []
        var finished = false
        var waiter: CheckedContinuation<[Item]?, Never>?
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        precondition(capacity > 0, "an outbound queue holds at least one item")
        self.capacity = capacity
    }

    func yield(_ item: Item) -> YieldResult {
        let (result, waiter) = state.withLock { state -> (YieldResult, CheckedContinuation<[Item]?, Never>?) in
            if state.finished { return (.terminated, nil) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (.enqueued, waiter)
            }
            guard state.items.count < capacity else { return (.dropped, nil) }
            state.items.append(item)
            return (.enqueued, nil)
        }
        waiter?.resume(returning: [item])
        return result
    }

    /// Ends the queue: the writer takes what is queued, then gets nil.
    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Everything queued, oldest first, waiting for at least one item; nil once finished and
    /// empty (or when the waiting task is cancelled, which finishes the queue). One writer.
    func next() async -> [Item]? {
        if case .ready(let items) = state.withLock({ Self.take(&$0) }) { return items }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[Item]?, Never>) in
                let taken = state.withLock { state in
                    let taken = Self.take(&state)
                    if case .wait = taken {
                        precondition(state.waiter == nil, "an outbound queue has one writer")
                        state.waiter = continuation
                    }
                    return taken
                }
                if case .ready(let items) = taken { continuation.resume(returning: items) }
            }
        } onCancel: {
            finish()
        }
    }

    private enum Taken {
        /// The queued items, or nil when the queue is finished and empty.
        case ready([Item]?)
        case wait
    }

    private static func take(_ state: inout State) -> Taken {
        if !state.items.isEmpty {
            defer { state.items = [] }
            return .ready(state.items)
        }
        return state.finished ? .ready(nil) : .wait
    }
}
