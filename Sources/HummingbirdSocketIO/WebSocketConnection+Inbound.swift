import Synchronization

extension WebSocketConnection {
    /// Whole messages from the event loop to the connection's receiver. Thread-safe (one
    /// lock); one producer (the event loop) and at most one consumer at a time.
    ///
    /// No task waits on an idle connection: when messages (or the end) arrive and no consumer
    /// runs, `append`, `end` and `receive(with:)` return the receiver to start one for; it
    /// takes until nothing is left and then stops. Whether a consumer runs changes only under
    /// the lock, together with the check for messages, so a message is never left without one.
    final class Inbound: Sendable {
        enum Taken: Sendable {
            /// At least one message; `resumeReading` when reading had paused and may go on.
            case messages([Message], resumeReading: Bool)
            /// The end: normal (nil), a protocol violation, or the channel's error. The last
            /// thing a consumer takes.
            case end((any Error)?)
        }

        private struct State {
            var messages: [Message] = []
            var bytes = 0
            var paused = false
            var ended = false
            var endTaken = false
            var failure: (any Error)?
            /// Set once by `startReceiving`; until then messages wait here.
            var receiver: (any WebSocketReceiver)?
            var consuming = false

            /// The receiver for a new consumer, when there is work and none runs.
            mutating func startIfIdle() -> (any WebSocketReceiver)? {
                guard !consuming, let receiver, !messages.isEmpty || (ended && !endTaken) else { return nil }
                consuming = true
                return receiver
            }
        }

        let pauseAtBytes: Int
        private let state = Mutex(State())

        init(pauseAtBytes: Int) {
            self.pauseAtBytes = pauseAtBytes
        }

        /// Adds a message. `pause`: reading should pause until a consumer takes them; `start`:
        /// the receiver a consumer must now be started for.
        func append(_ message: Message) -> (pause: Bool, start: (any WebSocketReceiver)?) {
            state.withLock { state in
                guard !state.ended else { return (false, nil) }
                state.messages.append(message)
                state.bytes += message.byteCount
                if state.bytes > pauseAtBytes { state.paused = true }
                return (state.paused, state.startIfIdle())
            }
        }

        /// No more messages: after those waiting, the consumer gets the end (with `failure`).
        /// Returns the receiver a consumer must now be started for, if any.
        func end(_ failure: (any Error)?) -> (any WebSocketReceiver)? {
            state.withLock { state in
                guard !state.ended else { return nil }
                state.ended = true
                state.failure = failure
                return state.startIfIdle()
            }
        }

        /// Sets the receiver (once); returns it when a consumer must start for what came before.
        func receive(with receiver: any WebSocketReceiver) -> (any WebSocketReceiver)? {
            state.withLock { state in
                guard state.receiver == nil else { return nil }
                state.receiver = receiver
                return state.startIfIdle()
            }
        }

        /// What the consumer handles next; nil when nothing is left, and the consumer must stop
        /// (it is marked stopped under the same lock).
        func take() -> Taken? {
            state.withLock { state in
                if !state.messages.isEmpty {
                    defer {
                        state.messages = []
                        state.bytes = 0
                        state.paused = false
                    }
                    return .messages(state.messages, resumeReading: state.paused)
                }
                if state.ended, !state.endTaken {
                    state.endTaken = true
                    // The receiver and what it holds are not kept past the end.
                    state.receiver = nil
                    return .end(state.failure)
                }
                state.consuming = false
                return nil
            }
        }
    }
}
