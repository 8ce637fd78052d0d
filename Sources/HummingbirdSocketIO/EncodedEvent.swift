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

/// An answer to a client's acknowledgement request, encoded before the server's lock is taken
/// (`SocketIOServer.ack(_:)`): its arguments are written straight into the packet's text.
public struct EncodedAck: Sendable {
    public let socket: SocketRef
    /// The ack id the client's event asked for.
    public let id: UInt64
    let packet: EnginePacket

    /// The ack `id` of `socket`'s event, with the arguments `arguments` writes.
    public init(_ socket: SocketRef, id: UInt64, arguments: (inout JSONOutput) -> Void) {
        self.socket = socket
        self.id = id
        packet = .message(SocketPacket.encodeAck(namespace: socket.namespace, id: id, arguments: arguments))
    }

    /// The Socket.IO packet's text, for tests.
    public var text: String {
        if case .text(let text) = packet.data { return text }
        return ""
    }
}
