import Synchronization
@testable import HummingbirdSocketIO

/// A `WebSocketReceiver` for tests: hands on what it is given, message by message, and can
/// hold each batch until the test releases it (a receiver still at work).
final class RecordingReceiver: WebSocketReceiver {
    enum Event: Sendable {
        case message(WebSocketConnection.Message)
        case ended((any Error)?)
    }

    let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let holding: Bool
    private struct Gate {
        var permits = 0
        var waiter: CheckedContinuation<Void, Never>?
        var batches = 0
        var running = 0
        var overlapped = false
    }
    private let gate = Mutex(Gate())

    init(holding: Bool = false) {
        (events, continuation) = AsyncStream.makeStream()
        self.holding = holding
    }

    /// How many batches it was given.
    var batches: Int { gate.withLock { $0.batches } }
    /// Whether two calls ever ran at once.
    var overlapped: Bool { gate.withLock { $0.overlapped } }

    func receive(_ messages: [WebSocketConnection.Message]) async {
        gate.withLock { gate in
            gate.batches += 1
            gate.running += 1
            if gate.running > 1 { gate.overlapped = true }
        }
        for message in messages { continuation.yield(.message(message)) }
        if holding {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let now = gate.withLock { gate -> Bool in
                    if gate.permits > 0 {
                        gate.permits -= 1
                        return true
                    }
                    gate.waiter = waiter
                    return false
                }
                if now { waiter.resume() }
            }
        }
        gate.withLock { $0.running -= 1 }
    }

    func ended(_ failure: (any Error)?) async {
        continuation.yield(.ended(failure))
        continuation.finish()
    }

    /// Lets one held batch (the one waiting, or the next) return.
    func release() {
        let waiter = gate.withLock { gate -> CheckedContinuation<Void, Never>? in
            guard let waiter = gate.waiter else {
                gate.permits += 1
                return nil
            }
            gate.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
