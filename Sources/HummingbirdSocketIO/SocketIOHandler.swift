import SocketIO

/// One Socket.IO socket: a client's connection to one namespace.
public struct SocketRef: Hashable, Sendable, CustomStringConvertible {
    /// The Engine.IO session id (the transport connection).
    public let engineID: String
    public let namespace: String
    /// The socket id the client was given in the CONNECT reply.
    public let socketID: String

    public var description: String { "\(namespace)#\(socketID)" }
}

/// A client's request to connect to a namespace.
public struct ConnectRequest: Sendable {
    public let engineID: String
    public let namespace: String
    /// The CONNECT payload (Socket.IO's `auth`), when the client sent one.
    public let auth: JSONValue?
    /// The private session id and offset of a client that is reconnecting.
    public let recovery: SocketSession.Recovery?
}

public enum ConnectDecision: Sendable {
    /// Accept with this private session id for later recovery (nil: no recovery).
    case accept(pid: String?)
    /// Refuse with a message (CONNECT_ERROR) and optional data.
    case refuse(message: String, data: JSONValue?)
}

/// What the application does with Socket.IO clients. Called from the request or WebSocket
/// task of the connection concerned, outside the server's lock, so a handler may await.
public protocol SocketIOHandler: Sendable {
    func authorize(_ request: ConnectRequest) async -> ConnectDecision
    func connected(_ socket: SocketRef, server: SocketIOServer) async
    /// An event; when `ackID` is set the client waits for `server.ack(socket, id:, ...)`.
    /// `arguments` are read on demand: as values, straight into the handler's own types
    /// (`read`), or relayed as they came (`server.emit(_:event:relaying:)`).
    func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async
    func disconnected(_ socket: SocketRef, reason: SocketSession.DisconnectReason, server: SocketIOServer) async
}

extension SocketIOHandler {
    public func authorize(_ request: ConnectRequest) async -> ConnectDecision { .accept(pid: nil) }
    public func connected(_ socket: SocketRef, server: SocketIOServer) async {}
    public func disconnected(_ socket: SocketRef, reason: SocketSession.DisconnectReason, server: SocketIOServer) async {}
}
