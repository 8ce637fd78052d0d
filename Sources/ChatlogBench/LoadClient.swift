import LoopbackWebSocket
import NIOCore
import NIOPosix
import NIOWebSocket

/// One client of `chatlog bench load`: a WebSocket speaking just enough Engine.IO and
/// Socket.IO to connect, join its room, send its messages (at most `window` unacknowledged)
/// and check the messages it receives. Everything happens on its channel's event loop; it
/// answers pings. Not thread-safe: owned by that event loop.
final class LoadClient: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    struct Plan: Sendable {
        var username: String
        var room: String
        /// This client's sender number, when it sends.
        var sender: Int?
        var senders: Int
        var messages: Int
        var window: Int
        /// Messages the room receives from its senders, all of which this client must get.
        var expected: Int
        /// Resume: join with `after`.
        var after: Int?
    }

    struct Stats: Sendable {
        var deliveries = 0
        var acks = 0
        var lost = 0
        var duplicated = 0
        var latencies = LatencyHistogram()
        var lastDeliveryMicros: UInt64 = 0
        var lastAckMicros: UInt64 = 0
    }

    enum Phase { case opening, connecting, joining, joined, running, done }

    let plan: Plan
    let clock: LoadClock
    let joined: EventLoopPromise<Void>
    let done: EventLoopPromise<Stats>
    private var context: ChannelHandlerContext?
    private var phase = Phase.opening
    private var stats = Stats()
    private var sent = 0
    /// The next sequence number expected from each sender.
    private var nextSequence: [Int: Int] = [:]
    private var unique = 0
    private(set) var lastID: Int?
    private static let text = "Sure, I'll push the fix after lunch, can you review?"

    init(plan: Plan, clock: LoadClock, joined: EventLoopPromise<Void>, done: EventLoopPromise<Stats>) {
        self.plan = plan
        self.clock = clock
        self.joined = joined
        self.done = done
    }

    static func connect(host: String, port: Int, group: any EventLoopGroup, plan: Plan, clock: LoadClock) async throws
        -> (any Channel, NIOLoopBound<LoadClient>, EventLoopFuture<Void>, EventLoopFuture<Stats>) {
        try await LoopbackWebSocket.connect(host: host, port: port, path: "/socket.io/?EIO=4&transport=websocket", group: group) { channel in
            let joined = channel.eventLoop.makePromise(of: Void.self)
            let done = channel.eventLoop.makePromise(of: Stats.self)
            let client = LoadClient(plan: plan, clock: clock, joined: joined, done: done)
            try channel.pipeline.syncOperations.addHandler(client)
            return (channel, NIOLoopBound(client, eventLoop: channel.eventLoop), joined.futureResult, done.futureResult)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        fail()
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail()
        context.fireChannelInactive()
    }

    private func fail() {
        if phase.rawOrder < Phase.joined.rawOrder { joined.fail(ChannelError.ioOnClosedChannel) }
        finish()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// All clients have joined: senders start sending.
    func start() {
        guard phase == .joined else { return }
        phase = .running
        if plan.sender != nil {
            sendMore()
        }
        finishIfComplete()
    }

    /// The time is up: report what arrived.
    func giveUp() { finish() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.opcode == .text else {
            if frame.opcode == .ping {
                write(WebSocketFrame(fin: true, opcode: .pong, maskKey: .fast(), data: frame.unmaskedData))
            }
            return
        }
        let bytes = frame.unmaskedData
        bytes.withUnsafeReadableBytes { handle($0) }
    }

    private func handle(_ text: UnsafeRawBufferPointer) {
        guard let type = text.first else { return }
        switch type {
        case UInt8(ascii: "0") where phase == .opening:
            phase = .connecting
            send(#"40{"username":"\#(plan.username)"}"#)
        case UInt8(ascii: "2"):
            send("3")
        case UInt8(ascii: "4"):
            guard text.count > 1 else { return }
            switch text[1] {
            case UInt8(ascii: "0") where phase == .connecting && plan.room.isEmpty:
                phase = .joined  // connected, in no room
                joined.succeed(())
            case UInt8(ascii: "0") where phase == .connecting:
                phase = .joining
                let after = plan.after.map { #","after":\#($0)"# } ?? ""
                send(#"420["join-group",{"group":"\#(plan.room)","username":"\#(plan.username)"\#(after)}]"#)
            case UInt8(ascii: "3"):
                acknowledged(text)
            case UInt8(ascii: "2"):
                delivered(text)
            default:
                break
            }
        default:
            break
        }
    }

    private func acknowledged(_ text: UnsafeRawBufferPointer) {
        if phase == .joining {
            lastID = Self.integer(after: #""last_id":"#, in: text)
            phase = .joined
            joined.succeed(())
            return
        }
        guard phase == .running else { return }
        stats.acks += 1
        stats.lastAckMicros = clock.micros
        sendMore()
        finishIfComplete()
    }

    private static let eventName = Array(#"42["send-group-message","#.utf8)

    private func delivered(_ text: UnsafeRawBufferPointer) {
        guard text.starts(with: Self.eventName), phase != .opening, phase != .connecting, phase != .done else { return }
        let now = clock.micros
        guard let created = Self.integer(after: #""created":"#, in: text),
              let (sender, sequence) = Self.clientID(in: text) else { return }
        stats.deliveries += 1
        stats.lastDeliveryMicros = now
        stats.latencies.record(micros: now >= UInt64(created) ? now - UInt64(created) : 0)
        let next = nextSequence[sender, default: 0]
        if sequence < next {
            stats.duplicated += 1
        } else {
            nextSequence[sender] = sequence + 1
            unique += 1
        }
        finishIfComplete()
    }

    private func sendMore() {
        guard let sender = plan.sender else { return }
        var batch: [String] = []
        while sent < plan.messages, sent - stats.acks < plan.window {
            let ack = sent + 1
            batch.append(#"42\#(ack)["send-group-message",{"group":"\#(plan.room)","message":"\#(Self.text)","created":\#(clock.micros),"client_id":"b\#(sender)-\#(sent)"}]"#)
            sent += 1
        }
        for message in batch { send(message, flush: false) }
        if !batch.isEmpty { context?.flush() }
    }

    private func finishIfComplete() {
        guard phase == .running, unique >= plan.expected, plan.sender == nil || stats.acks >= plan.messages else { return }
        finish()
    }

    private func finish() {
        guard phase != .done else { return }
        phase = .done
        stats.lost = max(0, plan.expected - unique)
        done.succeed(stats)
    }

    private func send(_ text: String, flush: Bool = true) {
        write(WebSocketFrame(fin: true, opcode: .text, maskKey: .fast(), data: ByteBuffer(string: text)), flush: flush)
    }

    private func write(_ frame: WebSocketFrame, flush: Bool = true) {
        guard let context else { return }
        if flush {
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        } else {
            context.write(wrapOutboundOut(frame), promise: nil)
        }
    }

    /// The integer after `key` in `text`.
    static func integer(after key: StaticString, in text: UnsafeRawBufferPointer) -> Int? {
        guard var index = find(key, in: text) else { return nil }
        var value = 0
        var digits = 0
        while index < text.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(text[index]) {
            value = value * 10 + Int(text[index] - UInt8(ascii: "0"))
            index += 1
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    /// The sender and sequence of a `"client_id":"b<sender>-<sequence>"`.
    static func clientID(in text: UnsafeRawBufferPointer) -> (Int, Int)? {
        guard var index = find(#""client_id":"b"#, in: text) else { return nil }
        var numbers: [Int] = []
        var value = 0
        while index < text.count {
            let byte = text[index]
            if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            } else {
                numbers.append(value)
                value = 0
                if byte != UInt8(ascii: "-") { break }
            }
            index += 1
        }
        return numbers.count == 2 ? (numbers[0], numbers[1]) : nil
    }

    /// The index just after `key` in `text`.
    static func find(_ key: StaticString, in text: UnsafeRawBufferPointer) -> Int? {
        let count = key.utf8CodeUnitCount
        guard count > 0, text.count >= count else { return nil }
        return key.withUTF8Buffer { needle -> Int? in
            guard let haystack = text.baseAddress, let pattern = needle.baseAddress else { return nil }
            var start = 0
            while start + count <= text.count {
                if text[start] == needle[0], memcmp(haystack + start, pattern, count) == 0 {
                    return start + count
                }
                start += 1
            }
            return nil
        }
    }
}

extension LoadClient.Phase {
    var rawOrder: Int {
        switch self {
        case .opening: 0
        case .connecting: 1
        case .joining: 2
        case .joined: 3
        case .running: 4
        case .done: 5
        }
    }
}
