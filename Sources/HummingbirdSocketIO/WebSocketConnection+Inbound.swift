import Synchronization

extension WebSocketConnection {
    /// Whole messages from the event loop to the connection's task. Thread-safe (one lock);
    /// one producer (the event loop) and one consumer (the task).
    final class Inbound: Sendable {
        enum Taken: Sendable {
            /// At least one message; `resumeReading` when reading had paused and may go on.
            case messages([Message], resumeReading: Bool)
            /// The end: normal (nil), a protocol violation, or the channel's error.
            case end((any Error)?)
        }

        private struct State {
            var messages: [Message] = []
            var bytes = 0
            var paused = false
            var ended = false
            var failure: (any Error)?
            var waiter: CheckedContinuation<Taken, Never>?
        }

        let pauseAtBytes: Int
        private let state = Mutex(State())

        init(pauseAtBytes: Int) {
            self.pauseAtBytes = pauseAtBytes
        }

        /// Adds a message; true when reading should pause until the task takes them.
        func append(_ message: Message) -> Bool {
            let (pause, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Taken, Never>?) in
                guard !state.ended else { return (false, nil) }
                if let waiter = state.waiter {
                    state.waiter = nil
                    return (false, waiter)
                }
                state.messages.append(message)
                state.bytes += message.byteCount
                if state.bytes > pauseAtBytes { state.paused = true }
                return (state.paused, nil)
            }
            waiter?.resume(returning: .messages([message], resumeReading: false))
            return pause
        }

        /// No more messages: after those waiting, the task gets the end (with `failure`).
        func end(_ failure: (any Error)?) {
            let waiter = state.withLock { state -> CheckedContinuation<Taken, Never>? in
                guard !state.ended else { return nil }
                state.ended = true
                state.failure = failure
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: .end(failure))
        }

        func take() async -> Taken {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Taken? in
                    if !state.messages.isEmpty {
                        defer {
                            state.messages = []
                            state.bytes = 0
                            state.paused = false
                        }
                        return .messages(state.messages, resumeReading: state.paused)
                    }
                    if state.ended { return .end(state.failure) }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
