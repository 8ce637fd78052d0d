/// One Engine.IO v4 session on the server, as a state machine: events in (requests, frames,
/// timers, packets to send), actions out for the I/O layer to carry out. No I/O, no clock of
/// its own (callers pass `now`), so every path is tested without sockets.
///
/// The session starts on HTTP long-polling or on WebSocket. A polling session may upgrade:
/// the client opens a WebSocket with the session id, sends `2probe`, the server answers
/// `3probe`, the client sends `5` (upgrade), and from then on everything goes over the
/// WebSocket; packets sent meanwhile wait for it. While the upgrade is under way a poll
/// waiting when the WebSocket opened ends at once with a `noop`, and a later poll is held for
/// `upgradePollHold` and then ends with a `noop`, so the client's polling winds down; if the
/// upgrade completes first, that poll is answered 400, as it would be had it arrived after the
/// `5`. (Holding it makes the answer independent of whether the WebSocket's frames or the
/// poll reach the server first.) An upgrade that does not complete within `upgradeTimeout`
/// is abandoned: the probe socket is closed and polling goes on.
///
/// The server pings every `pingInterval`; a client that has not answered within
/// `pingTimeout` of a ping being due is closed.
///
/// Not thread-safe; a value owned by the session's holder in the I/O layer.
public struct EngineSession: Sendable {
    public let sid: String
    public let configuration: EngineConfiguration
    private(set) var state: State
    /// Packets waiting for the next poll.
    private(set) var buffer: [EnginePacket] = []
    /// How many packets wait for the next poll (0 on a WebSocket).
    public var bufferedPacketCount: Int { buffer.count }
    /// Their payloads' bytes (`EnginePacket.payloadBytes`).
    public private(set) var bufferedBytes = 0
    private var nextPingAt: ContinuousClock.Instant
    private var pongDeadline: ContinuousClock.Instant?
    /// When the upgrade under way is abandoned.
    private var upgradeDeadline: ContinuousClock.Instant?
    /// When the poll held during an upgrade is ended with a noop.
    private var heldPollEndsAt: ContinuousClock.Instant?

    /// Opens a session; returns it and the `open` packet to send first (as the first poll's
    /// answer, or the first WebSocket frame).
    public static func open(
        sid: String,
        transport: Transport,
        configuration: EngineConfiguration,
        now: ContinuousClock.Instant
    ) -> (EngineSession, EnginePacket) {
        let session = EngineSession(sid: sid, configuration: configuration,
                                    state: transport == .polling ? .polling(pollWaiting: false, upgrade: .none) : .websocket,
                                    nextPingAt: now.advanced(by: configuration.pingInterval))
        let upgrades = transport == .polling ? ["websocket"] : []
        return (session, EnginePacket(.open, .text(configuration.handshake(sid: sid, upgrades: upgrades))))
    }

    private init(sid: String, configuration: EngineConfiguration, state: State, nextPingAt: ContinuousClock.Instant) {
        self.sid = sid
        self.configuration = configuration
        self.state = state
        self.nextPingAt = nextPingAt
    }

    public var transport: Transport? {
        switch state {
        case .polling: .polling
        case .websocket: .websocket
        case .closed: nil
        }
    }

    public var isClosed: Bool {
        if case .closed = state { true } else { false }
    }

    /// When `timerFired` must next be called.
    public var nextDeadline: ContinuousClock.Instant? {
        guard !isClosed else { return nil }
        return [pongDeadline, upgradeDeadline, heldPollEndsAt].reduce(nextPingAt) { earliest, deadline in
            deadline.map { min($0, earliest) } ?? earliest
        }
    }

    // MARK: Events

    /// A poll request (GET) arrived.
    public mutating func pollArrived(now: ContinuousClock.Instant) -> PollDecision {
        switch state {
        case .closed, .websocket:
            return .reject([])
        case .polling(let pollWaiting, let upgrade):
            if pollWaiting {
                // The protocol allows one poll at a time: end the session; the waiting poll
                // learns it through a close packet.
                return .reject(close(.duplicatePoll, closePacketToPoll: true))
            }
            if upgrade != .none {
                // Upgrading: packets wait for the WebSocket; the poll ends with a noop after
                // `upgradePollHold`, or with 400 if the upgrade completes first.
                heldPollEndsAt = now.advanced(by: configuration.upgradePollHold)
            } else if !buffer.isEmpty {
                return .answer(takeBuffer())
            }
            state = .polling(pollWaiting: true, upgrade: upgrade)
            return .hold
        }
    }

    /// The waiting poll request went away (the client disconnected it).
    public mutating func pollAbandoned() {
        if case .polling(true, let upgrade) = state { state = .polling(pollWaiting: false, upgrade: upgrade) }
        heldPollEndsAt = nil
    }

    /// A POST of a polling payload arrived. Returns whether to answer it 200 `ok` (else 400),
    /// and the actions.
    public mutating func postArrived(_ body: [UInt8]) -> (ok: Bool, actions: [Action]) {
        guard case .polling = state else { return (false, []) }
        guard body.count <= configuration.maxPayload else {
            return (false, close(.protocolError("payload of \(body.count) bytes exceeds maxPayload \(configuration.maxPayload)")))
        }
        let packets: [EnginePacket]
        do {
            packets = try EnginePacket.decodePayload(body, packetsMax: configuration.payloadPacketsMax)
        } catch {
            return (false, close(.protocolError(error.description)))
        }
        let actions = receive(packets, from: .polling)
        return (!isClosed || actions.contains(.closed(.clientClosed)), actions)
    }

    /// A frame arrived on the session's WebSocket.
    public mutating func frameArrived(_ packet: EnginePacket) -> [Action] {
        guard case .websocket = state else { return [] }
        return receive([packet], from: .websocket)
    }

    /// A WebSocket with this session's id opened: the upgrade begins. Returns false when the
    /// session cannot upgrade (not polling, or already upgrading): refuse that WebSocket.
    public mutating func probeAttached(now: ContinuousClock.Instant) -> (accepted: Bool, actions: [Action]) {
        guard case .polling(let pollWaiting, .none) = state else { return (false, []) }
        state = .polling(pollWaiting: pollWaiting, upgrade: .attached)
        upgradeDeadline = now.advanced(by: configuration.upgradeTimeout)
        // A poll already waiting is held like one that arrives during the upgrade: it ends
        // with a noop after `upgradePollHold` (the client's polling winds down), or with 400
        // if the upgrade completes first. Which of the WebSocket's attachment, its frames and
        // the poll the server sees first must not change the answer: they reach it on
        // different connections, in any order.
        if pollWaiting { heldPollEndsAt = now.advanced(by: configuration.upgradePollHold) }
        return (true, [])
    }

    /// A frame arrived on the WebSocket that is upgrading this session.
    public mutating func probeFrameArrived(_ packet: EnginePacket) -> [Action] {
        guard case .polling(_, let upgrade) = state, upgrade != .none else {
            // A second WebSocket for an upgraded or closed session: refuse it.
            return [.writeProbeFrames([EnginePacket(.close)])]
        }
        switch (packet.type, packet.data) {
        case (.ping, .text("probe")) where upgrade == .attached:
            if case .polling(let pollWaiting, _) = state { state = .polling(pollWaiting: pollWaiting, upgrade: .probed) }
            return [.writeProbeFrames([EnginePacket(.pong, .text("probe"))])]
        case (.upgrade, _) where upgrade == .probed:
            var actions: [Action] = []
            if case .polling(true, _) = state { actions.append(.rejectPoll) }
            state = .websocket
            upgradeDeadline = nil
            heldPollEndsAt = nil
            let pending = buffer
            buffer = []
            bufferedBytes = 0
            if !pending.isEmpty { actions.append(.writeFrames(pending)) }
            return actions
        default:
            return close(.protocolError("unexpected \(packet.type) during upgrade"))
        }
    }

    /// The session's socket closed (or the upgrading socket, before the upgrade completed:
    /// then polling goes on).
    public mutating func transportClosed(probe: Bool = false) -> [Action] {
        if probe {
            guard case .polling(let pollWaiting, let upgrade) = state, upgrade != .none else { return [] }
            return abandonUpgrade(pollWaiting: pollWaiting)
        }
        return close(.transportClosed)
    }

    /// Packets from the layer above to send to the client.
    public mutating func send(_ packets: [EnginePacket]) -> [Action] {
        guard !packets.isEmpty else { return [] }
        switch state {
        case .closed:
            return []
        case .websocket:
            return [.writeFrames(packets)]
        case .polling(let pollWaiting, let upgrade):
            let wasEmpty = buffer.isEmpty
            buffer.append(contentsOf: packets)
            for packet in packets { bufferedBytes += packet.payloadBytes }
            if pollWaiting && upgrade == .none {
                state = .polling(pollWaiting: false, upgrade: upgrade)
                return [.answerPoll(takeBuffer())]
            }
            // Packets arriving at an empty buffer are kept whatever their size (one large
            // reply fits); a client that lets more pile up is too slow.
            if buffer.count > configuration.pollingBufferPacketsMax
                || (!wasEmpty && bufferedBytes > configuration.pollingBufferBytesMax) {
                return close(.tooSlow)
            }
            return []
        }
    }

    /// Sends pings and enforces the ping timeout.
    public mutating func timerFired(now: ContinuousClock.Instant) -> [Action] {
        guard !isClosed else { return [] }
        if let pongDeadline, now >= pongDeadline {
            return close(.pingTimeout)
        }
        var actions: [Action] = []
        if let upgradeDeadline, now >= upgradeDeadline, case .polling(let pollWaiting, _) = state {
            actions += abandonUpgrade(pollWaiting: pollWaiting) + [.closeProbe]
        }
        if let heldPollEndsAt, now >= heldPollEndsAt, case .polling(true, let upgrade) = state {
            state = .polling(pollWaiting: false, upgrade: upgrade)
            self.heldPollEndsAt = nil
            actions.append(.answerPoll(EnginePacket.encodePayload([EnginePacket(.noop)])))
        }
        guard now >= nextPingAt else { return actions }
        // Deadlines count from when the ping was due, not from when the caller's timer got
        // round to it, so a late tick does not stretch the client's allowance.
        let due = nextPingAt
        nextPingAt = max(due.advanced(by: configuration.pingInterval), now)
        if pongDeadline == nil { pongDeadline = due.advanced(by: configuration.pingTimeout) }
        return actions + send([EnginePacket(.ping)])
    }

    /// Closes the session from the server side, telling the client.
    /// The server closes a polling session whose client lets packets pile up while the
    /// process holds too much for slow readers (`SocketIOServer`'s outbound budget).
    public mutating func closeTooSlow() -> [Action] {
        guard !isClosed else { return [] }
        return close(.tooSlow)
    }

    public mutating func close() -> [Action] {
        guard !isClosed else { return [] }
        switch state {
        case .websocket:
            let actions = close(.serverClosed)
            return [.writeFrames([EnginePacket(.close)])] + actions
        default:
            return close(.serverClosed, closePacketToPoll: true)
        }
    }

    // MARK: Internals

    private mutating func receive(_ packets: [EnginePacket], from transport: Transport) -> [Action] {
        var messages: [EnginePacket.Payload] = []
        var actions: [Action] = []
        for packet in packets {
            switch packet.type {
            case .message:
                messages.append(packet.data)
            case .pong:
                pongDeadline = nil
            case .close:
                if !messages.isEmpty { actions.append(.deliver(messages)) }
                // A waiting poll ends with a noop, as the reference server does.
                return actions + close(.clientClosed, noopToPoll: true)
            case .noop where transport == .polling:
                break
            case .open, .ping, .upgrade, .noop:
                if !messages.isEmpty { actions.append(.deliver(messages)) }
                return actions + close(.protocolError("unexpected \(packet.type) packet from the client"))
            }
        }
        if !messages.isEmpty { actions.append(.deliver(messages)) }
        return actions
    }

    /// The upgrade ends without completing (probe closed or timed out): polling goes on, and a
    /// poll held for the upgrade gets what is buffered, or goes on waiting.
    private mutating func abandonUpgrade(pollWaiting: Bool) -> [Action] {
        state = .polling(pollWaiting: pollWaiting, upgrade: .none)
        upgradeDeadline = nil
        heldPollEndsAt = nil
        guard pollWaiting, !buffer.isEmpty else { return [] }
        state = .polling(pollWaiting: false, upgrade: .none)
        return [.answerPoll(takeBuffer())]
    }

    /// The next poll's payload: the oldest `pollPacketsMax` packets; the rest waits for the
    /// next poll, which is then answered at once.
    private mutating func takeBuffer() -> String {
        guard buffer.count > configuration.pollPacketsMax else {
            defer {
                buffer.removeAll(keepingCapacity: true)
                bufferedBytes = 0
            }
            return EnginePacket.encodePayload(buffer)
        }
        let taken = buffer.prefix(configuration.pollPacketsMax)
        defer {
            buffer.removeFirst(configuration.pollPacketsMax)
            for packet in taken { bufferedBytes -= packet.payloadBytes }
        }
        return EnginePacket.encodePayload(Array(taken))
    }

    private mutating func close(_ reason: CloseReason, closePacketToPoll: Bool = false, noopToPoll: Bool = false) -> [Action] {
        var actions: [Action] = []
        if case .polling(true, _) = state {
            if closePacketToPoll {
                actions.append(.answerPoll(EnginePacket.encodePayload([EnginePacket(.close)])))
            } else if noopToPoll {
                actions.append(.answerPoll(EnginePacket.encodePayload([EnginePacket(.noop)])))
            }
        }
        state = .closed(reason)
        buffer = []
        bufferedBytes = 0
        pongDeadline = nil
        upgradeDeadline = nil
        heldPollEndsAt = nil
        actions.append(.closed(reason))
        return actions
    }
}
