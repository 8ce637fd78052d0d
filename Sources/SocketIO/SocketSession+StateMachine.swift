/// The Socket.IO v5 side of one Engine.IO session, as a state machine: namespace
/// connections, events, acknowledgements both ways, and their limits and timeouts.
///
/// It decodes what the Engine.IO session delivers and says what the application must decide
/// (`authorize` a CONNECT, handle an `event`, learn of an `ack`) and what to send. The
/// authorization hook itself is the caller's, usually asynchronous: it answers with
/// `accept` or `refuse`. No I/O and no clock of its own.
///
/// Not thread-safe; a value owned by the connection's holder.
public struct SocketSession: Sendable {
    public struct Configuration: Sendable {
        /// Namespaces a client may connect to (others get CONNECT_ERROR "Invalid namespace").
        public var namespaces: Set<String> = ["/"]
        /// How long after the Engine.IO handshake a client has to connect to a namespace.
        public var connectTimeout: Duration = .seconds(45)
        /// Acknowledgements the server may await at once per connection.
        public var pendingAcksMax = 256
        /// Whether CONNECT replies carry a private session id (`pid`) for connection-state
        /// recovery.
        public var recovery = true
        public var packetLimits = SocketPacket.Limits()
        /// Bytes of binary attachments one packet may carry.
        public var attachmentBytesMax = 1_000_000
        public init() {}
    }

    public enum Action: Sendable, Equatable {
        /// Send these Engine.IO packets (a Socket.IO packet and its attachments).
        case send([EnginePacket])
        /// Ask the application whether to accept a CONNECT; answer with `accept` or `refuse`.
        /// `recovery` holds the `pid` and `offset` a reconnecting client presented.
        case authorize(namespace: String, auth: JSONValue?, recovery: Recovery?)
        /// An event from the client; answer `ackID` (when set) with `ack`.
        case event(namespace: String, name: String, arguments: SocketEventArguments, ackID: UInt64?)
        /// The client acknowledged a server event.
        case ackReceived(namespace: String, id: UInt64, arguments: [JSONValue])
        /// A server event's acknowledgement did not come in time.
        case ackTimedOut(namespace: String, id: UInt64)
        /// A namespace connection began (after `accept`).
        case connected(namespace: String, socketID: String)
        /// A namespace connection ended; `socketID` is the one `connected` gave it.
        case disconnected(namespace: String, socketID: String, reason: DisconnectReason)
        /// Close the Engine.IO session.
        case closeConnection(DisconnectReason)
    }

    public struct Recovery: Sendable, Equatable {
        public var pid: String
        public var offset: String
    }

    public enum DisconnectReason: Sendable, Equatable, CustomStringConvertible {
        case clientDisconnect
        case serverDisconnect
        case connectTimeout
        case protocolError(String)
        case transportClosed

        public var description: String {
            switch self {
            case .clientDisconnect: "client namespace disconnect"
            case .serverDisconnect: "server namespace disconnect"
            case .connectTimeout: "no namespace connection in time"
            case .protocolError(let message): "protocol error: \(message)"
            case .transportClosed: "transport close"
            }
        }
    }

    struct PendingAck: Sendable, Equatable {
        var namespace: String
        var id: UInt64
        var deadline: ContinuousClock.Instant
    }

    public let configuration: Configuration
    /// Connected namespaces and their socket ids.
    public private(set) var sockets: [String: String] = [:]
    /// Namespaces whose CONNECT awaits the application's answer.
    private var authorizing: Set<String> = []
    private var assembler: SocketPacketAssembler
    private var pendingAcks: [PendingAck] = []
    private var nextAckID: UInt64 = 0
    private var connectDeadline: ContinuousClock.Instant?
    private var closed = false

    public init(configuration: Configuration, openedAt now: ContinuousClock.Instant) {
        self.configuration = configuration
        self.assembler = SocketPacketAssembler(limits: configuration.packetLimits,
                                               attachmentBytesMax: configuration.attachmentBytesMax)
        self.connectDeadline = now.advanced(by: configuration.connectTimeout)
    }

    /// When `timerFired` must next be called.
    public var nextDeadline: ContinuousClock.Instant? {
        guard !closed else { return nil }
        let ack = pendingAcks.map(\.deadline).min()
        switch (connectDeadline, ack) {
        case (let a?, let b?): return min(a, b)
        case (let a?, nil): return a
        case (nil, let b): return b
        }
    }

    // MARK: From the client

    /// A message the Engine.IO session delivered.
    public mutating func received(_ payload: EnginePacket.Payload, now: ContinuousClock.Instant) -> [Action] {
        guard !closed else { return [] }
        let packet: SocketPacket?
        do {
            switch payload {
            case .text(let text): packet = try assembler.receive(text: text)
            case .binary(let bytes): packet = try assembler.receive(binary: bytes)
            }
        } catch {
            return fail(error.description)
        }
        guard let packet else { return [] }
        return handle(packet, now: now)
    }

    private mutating func handle(_ packet: SocketPacket, now: ContinuousClock.Instant) -> [Action] {
        let namespace = packet.namespace
        switch packet.type {
        case .connect:
            guard configuration.namespaces.contains(namespace) else {
                return [.send(Self.engine(SocketPacket(.connectError, namespace: namespace,
                                                       data: .object([("message", .string("Invalid namespace"))]))))]
            }
            guard sockets[namespace] == nil, !authorizing.contains(namespace) else {
                return fail("a second CONNECT to \(namespace)")
            }
            authorizing.insert(namespace)
            let auth = packet.data
            var recovery: Recovery?
            if configuration.recovery, let pid = auth?["pid"]?.stringValue, let offset = auth?["offset"]?.stringValue {
                recovery = Recovery(pid: pid, offset: offset)
            }
            return [.authorize(namespace: namespace, auth: auth, recovery: recovery)]
        case .disconnect:
            guard let socketID = sockets.removeValue(forKey: namespace) else { return [] }
            pendingAcks.removeAll { $0.namespace == namespace }
            armConnectTimeoutIfIdle(now: now)
            return [.disconnected(namespace: namespace, socketID: socketID, reason: .clientDisconnect)]
        case .event, .binaryEvent:
            // Events for a namespace the client is not connected to are dropped, as the
            // reference server does.
            guard sockets[namespace] != nil, let name = packet.eventName else { return [] }
            return [.event(namespace: namespace, name: name, arguments: SocketEventArguments(packet: packet), ackID: packet.id)]
        case .ack, .binaryAck:
            guard let id = packet.id,
                  let index = pendingAcks.firstIndex(where: { $0.id == id && $0.namespace == namespace }) else { return [] }
            pendingAcks.remove(at: index)
            return [.ackReceived(namespace: namespace, id: id, arguments: packet.arguments)]
        case .connectError:
            return fail("CONNECT_ERROR from the client")
        }
    }

    // MARK: From the application

    /// Accepts a CONNECT the session asked to `authorize`.
    public mutating func accept(namespace: String, socketID: String, pid: String? = nil) -> [Action] {
        guard !closed, authorizing.remove(namespace) != nil else { return [] }
        sockets[namespace] = socketID
        connectDeadline = nil
        var reply: [(String, JSONValue)] = [("sid", .string(socketID))]
        if configuration.recovery, let pid { reply.append(("pid", .string(pid))) }
        return [.send(Self.engine(SocketPacket(.connect, namespace: namespace, data: .object(reply)))),
                .connected(namespace: namespace, socketID: socketID)]
    }

    /// Refuses a CONNECT with a message (and optional data), as CONNECT_ERROR.
    public mutating func refuse(namespace: String, message: String, data: JSONValue? = nil) -> [Action] {
        guard !closed, authorizing.remove(namespace) != nil else { return [] }
        var payload: [(String, JSONValue)] = [("message", .string(message))]
        if let data { payload.append(("data", data)) }
        return [.send(Self.engine(SocketPacket(.connectError, namespace: namespace, data: .object(payload))))]
    }

    /// Emits an event; with `ackTimeout`, asks for an acknowledgement and returns its id.
    /// - Returns: the actions, and the ack id (nil without `ackTimeout`, or when the pending
    ///   acknowledgements are at their limit, in which case nothing is sent).
    public mutating func emit(
        namespace: String,
        event: String,
        arguments: [JSONValue],
        ackTimeout: Duration? = nil,
        now: ContinuousClock.Instant
    ) -> (actions: [Action], ackID: UInt64?) {
        guard !closed, sockets[namespace] != nil else { return ([], nil) }
        var id: UInt64?
        if let ackTimeout {
            guard pendingAcks.count < configuration.pendingAcksMax else { return ([], nil) }
            id = nextAckID
            nextAckID += 1
            pendingAcks.append(PendingAck(namespace: namespace, id: nextAckID - 1, deadline: now.advanced(by: ackTimeout)))
        }
        let packet = SocketPacket(.event, namespace: namespace, id: id, data: .array([.string(event)] + arguments))
        return ([.send(Self.engine(packet))], id)
    }

    /// Emits an event whose arguments are those of an event a client sent, copied as text
    /// when they came as text (no parsing, no tree), as values otherwise.
    public mutating func emit(
        namespace: String,
        event: String,
        relaying arguments: SocketEventArguments,
        now: ContinuousClock.Instant
    ) -> [Action] {
        guard let payload = arguments.relayedPayload(named: event) else {
            return emit(namespace: namespace, event: event, arguments: arguments.values, now: now).actions
        }
        guard !closed, sockets[namespace] != nil else { return [] }
        var packet = SocketPacket(.event, namespace: namespace)
        packet.payload = .json(payload, .array(startsWithString: true), attachments: 0)
        return [.send(Self.engine(packet))]
    }

    /// Emits an event whose arguments `arguments` writes straight into the packet's text
    /// (`JSONOutput`), with no `JSONValue` tree. Text only: binary data needs `[JSONValue]`.
    public mutating func emit(namespace: String, event: String, now: ContinuousClock.Instant, writing arguments: (inout JSONOutput) -> Void) -> [Action] {
        guard !closed, sockets[namespace] != nil else { return [] }
        return [.send(Self.engine(SocketPacket.event(event, namespace: namespace, arguments: arguments)))]
    }

    /// Answers a client event's acknowledgement.
    public mutating func ack(namespace: String, id: UInt64, arguments: [JSONValue]) -> [Action] {
        guard !closed, sockets[namespace] != nil else { return [] }
        return [.send(Self.engine(SocketPacket(.ack, namespace: namespace, id: id, data: .array(arguments))))]
    }

    /// Disconnects one namespace from the server side.
    public mutating func disconnect(namespace: String, now: ContinuousClock.Instant) -> [Action] {
        guard !closed, let socketID = sockets.removeValue(forKey: namespace) else { return [] }
        pendingAcks.removeAll { $0.namespace == namespace }
        armConnectTimeoutIfIdle(now: now)
        return [.send(Self.engine(SocketPacket(.disconnect, namespace: namespace))),
                .disconnected(namespace: namespace, socketID: socketID, reason: .serverDisconnect)]
    }

    /// The Engine.IO session ended: every namespace is disconnected.
    public mutating func transportClosed() -> [Action] {
        guard !closed else { return [] }
        closed = true
        let actions = sockets.sorted { $0.key < $1.key }.map {
            Action.disconnected(namespace: $0.key, socketID: $0.value, reason: .transportClosed)
        }
        sockets = [:]
        pendingAcks = []
        return actions
    }

    /// Ack timeouts and the connect timeout.
    public mutating func timerFired(now: ContinuousClock.Instant) -> [Action] {
        guard !closed else { return [] }
        if let connectDeadline, now >= connectDeadline, sockets.isEmpty {
            closed = true
            return [.closeConnection(.connectTimeout)]
        }
        let expired = pendingAcks.filter { $0.deadline <= now }
        pendingAcks.removeAll { $0.deadline <= now }
        return expired.map { .ackTimedOut(namespace: $0.namespace, id: $0.id) }
    }

    // MARK: Internals

    /// A connection left with no namespace stays open, as with the reference server (the
    /// client may connect again over it), but only for `connectTimeout`: an idle Engine.IO
    /// session must not hold a slot for ever while the client keeps answering pings.
    private mutating func armConnectTimeoutIfIdle(now: ContinuousClock.Instant) {
        if sockets.isEmpty && authorizing.isEmpty {
            connectDeadline = now.advanced(by: configuration.connectTimeout)
        }
    }

    private mutating func fail(_ message: String) -> [Action] {
        closed = true
        var actions = sockets.sorted { $0.key < $1.key }.map {
            Action.disconnected(namespace: $0.key, socketID: $0.value, reason: .protocolError(message))
        }
        actions.append(.closeConnection(.protocolError(message)))
        sockets = [:]
        pendingAcks = []
        return actions
    }

    /// The Engine.IO packets of a Socket.IO packet: its text, then its attachments.
    static func engine(_ packet: SocketPacket) -> [EnginePacket] {
        let (text, attachments) = packet.encode()
        return [.message(text)] + attachments.map { EnginePacket(.message, .binary($0)) }
    }
}
