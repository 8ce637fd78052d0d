/// Engine.IO server settings and limits, sent to clients in the handshake where the protocol
/// says so. `validate()` checks them at start-up.
public struct EngineConfiguration: Sendable, Equatable {
    /// How often the server pings each session.
    public var pingInterval: Duration = .seconds(25)
    /// How long a client has to answer a ping before its session is closed.
    public var pingTimeout: Duration = .seconds(20)
    /// Largest polling request body or WebSocket message accepted, in bytes.
    public var maxPayload = 1_000_000
    /// Packets waiting for a client's next poll before the session is closed as too slow.
    /// Bounds a polling session's memory; WebSocket sessions have their own outbound queue.
    public var pollingBufferPacketsMax = 1_000
    /// Bytes of packet payloads waiting for a client's next poll before the session is closed
    /// as too slow (packets that arrive at an empty buffer are kept whatever their size).
    public var pollingBufferBytesMax = 8 << 20
    /// Packets one polling request body may carry.
    public var payloadPacketsMax = 256
    /// Packets one poll's response carries; more wait for the next poll, answered at once.
    /// 16 because python-engineio's client refuses a payload of more (`Payload.max_decode_packets`,
    /// a guard for its server side that its client shares) and drops the session; the
    /// JavaScript client has no such limit, and a poll on a busy session costs one more round
    /// trip per 16 packets.
    public var pollPacketsMax = 16
    /// How long a WebSocket probe may take to complete the upgrade before it is closed and
    /// the session goes on polling.
    public var upgradeTimeout: Duration = .seconds(10)
    /// How long a poll that arrives while an upgrade is under way is held before a `noop`
    /// ends it (the reference server checks every 100 ms); if the upgrade completes first the
    /// poll is answered 400.
    public var upgradePollHold: Duration = .milliseconds(100)

    public init() {}

    public func validate() throws(SocketIOProtocolError) {
        func fail(_ message: String) throws(SocketIOProtocolError) { throw .invalidConfiguration(message) }
        if pingInterval <= .zero { try fail("pingInterval must be positive") }
        if pingTimeout <= .zero { try fail("pingTimeout must be positive") }
        if maxPayload < 64 { try fail("maxPayload must be at least 64 bytes, got \(maxPayload)") }
        if pollingBufferPacketsMax < 1 || payloadPacketsMax < 1 || pollPacketsMax < 1 { try fail("packet limits must be positive") }
        if pollingBufferBytesMax < maxPayload { try fail("pollingBufferBytesMax must be at least maxPayload") }
        if upgradeTimeout <= .zero { try fail("upgradeTimeout must be positive") }
        if upgradePollHold < .zero || upgradePollHold >= upgradeTimeout {
            try fail("upgradePollHold must be at least zero and shorter than upgradeTimeout")
        }
    }

    /// The handshake's JSON (the `open` packet's data).
    func handshake(sid: String, upgrades: [String]) -> String {
        JSONValue.object([
            ("sid", .string(sid)),
            ("upgrades", .array(upgrades.map(JSONValue.string))),
            ("pingInterval", .number(Double(pingInterval.milliseconds))),
            ("pingTimeout", .number(Double(pingTimeout.milliseconds))),
            ("maxPayload", .number(Double(maxPayload))),
        ]).serialized()
    }
}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
