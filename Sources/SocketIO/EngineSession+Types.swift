/// The session's vocabulary: transports, why it closed, what the I/O layer must do, and its
/// internal states.
extension EngineSession {
    public enum Transport: Sendable, Equatable {
        case polling
        case websocket
    }

    public enum CloseReason: Sendable, Equatable, CustomStringConvertible {
        /// The client sent a close packet.
        case clientClosed
        /// The client did not answer a ping in time.
        case pingTimeout
        /// The client sent something the protocol does not allow.
        case protocolError(String)
        /// A second poll arrived while one was pending.
        case duplicatePoll
        /// More packets waited for the next poll than `pollingBufferPacketsMax`.
        case tooSlow
        /// The transport (the socket) went away.
        case transportClosed
        /// The server closed the session.
        case serverClosed

        public var description: String {
            switch self {
            case .clientClosed: "client closed"
            case .pingTimeout: "ping timeout"
            case .protocolError(let message): "protocol error: \(message)"
            case .duplicatePoll: "duplicate poll request"
            case .tooSlow: "client too slow: polling buffer full"
            case .transportClosed: "transport closed"
            case .serverClosed: "server closed"
            }
        }
    }

    /// What the I/O layer must do.
    public enum Action: Sendable, Equatable {
        /// Answer the poll request that is waiting (or the one being handled) with this body.
        case answerPoll(String)
        /// Write these packets on the session's WebSocket.
        case writeFrames([EnginePacket])
        /// Write these packets on the WebSocket that is probing for an upgrade.
        case writeProbeFrames([EnginePacket])
        /// Close the WebSocket that was probing for an upgrade (the upgrade timed out).
        case closeProbe
        /// Answer the poll request that is waiting with 400 (the session moved to WebSocket).
        case rejectPoll
        /// Hand these messages to the layer above (Socket.IO).
        case deliver([EnginePacket.Payload])
        /// The session is over: close its sockets, answer any waiting poll, forget its id.
        case closed(CloseReason)
    }

    /// What to do with a poll request (GET).
    public enum PollDecision: Sendable, Equatable {
        /// Answer it now with this body.
        case answer(String)
        /// Hold it until there is something to send (then `answerPoll`).
        case hold
        /// Answer 400; then carry out `actions` (which may end the session).
        case reject([Action])
    }

    /// How far an upgrade to WebSocket has got.
    enum Upgrade: Sendable, Equatable {
        case none
        /// A WebSocket with this session's id is open.
        case attached
        /// ... and `2probe` was answered.
        case probed
    }

    enum State: Sendable, Equatable {
        case polling(pollWaiting: Bool, upgrade: Upgrade)
        case websocket
        case closed(CloseReason)
    }
}
