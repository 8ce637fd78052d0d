import SocketIO

/// A Socket.IO event encoded once, for any number of recipients (`SocketIOServer.send`): the
/// application writes its name and arguments, the binding owns the packet around them.
public struct EncodedEvent: Sendable {
    let packet: EnginePacket

    /// The event `name` of `namespace`, with the arguments `arguments` writes straight into
    /// the packet's text (no `JSONValue` tree).
    public init(_ name: String, namespace: String = "/", arguments: (inout JSONOutput) -> Void) {
        packet = .message(SocketPacket.encodeEvent(name, namespace: namespace, arguments: arguments))
    }

    /// The Socket.IO packet's text (what follows the Engine.IO `message` type), for tests.
    public var text: String {
        if case .text(let text) = packet.data { return text }
        return ""
    }
}
