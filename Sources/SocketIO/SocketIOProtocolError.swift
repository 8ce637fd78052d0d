/// Bad bytes from a peer. Each case says what was wrong; the session layer closes the
/// connection (Engine.IO) or refuses the packet (Socket.IO) as the specifications say.
public enum SocketIOProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidJSON(String)
    case invalidEnginePacket(String)
    case invalidPayload(String)
    case invalidSocketPacket(String)
    case tooLarge(what: String, bytes: Int, limit: Int)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .invalidJSON(let message): "invalid JSON: \(message)"
        case .invalidEnginePacket(let message): "invalid Engine.IO packet: \(message)"
        case .invalidPayload(let message): "invalid Engine.IO polling payload: \(message)"
        case .invalidSocketPacket(let message): "invalid Socket.IO packet: \(message)"
        case .tooLarge(let what, let bytes, let limit): "\(what) of \(bytes) exceeds the limit of \(limit)"
        case .invalidConfiguration(let message): "invalid Engine.IO configuration: \(message)"
        }
    }
}
