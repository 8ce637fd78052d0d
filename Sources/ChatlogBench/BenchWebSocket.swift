import ArgumentParser
import HummingbirdSocketIO
import Foundation
import Hummingbird
import LoopbackWebSocket
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket

struct BenchWebSocket: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "websocket",
        abstract: "Events echoed over one WebSocket connection, against Engine.IO and plain WebSocket echoes in the same run.",
        discussion: """
            Starts the conformance server on a free loopback port (with the default 25 s / \
            20 s heartbeat and 45 s connect timeout) and drives one WebSocket connection: --events Socket.IO events \
            ("message", a 170-byte chat payload) that the server answers with \
            "message-back", at most --window in flight. Two baselines, in the same run and on \
            the same port, get the same number of messages: the bare Engine.IO echo server \
            (Engine.IO without Socket.IO and its handler) and a plain WebSocket echo \
            (chatlog's WebSocket layer alone: the transport's ceiling). The client runs in \
            this process, on an event loop thread of its own, and shares the machine's cores \
            with the server. Each figure is the median of --rounds rounds. The last line is \
            one JSON object.
            """
    )

    @Option(help: "Events per round.") var events = 200_000
    @Option(help: "Events in flight at most (below the server's 1,024-frame outbound queue).") var window = 512
    @Option(help: "Rounds per figure (the median is reported).") var rounds = 3
    @Option(help: ArgumentHelp("Measure only this echo (socketio, engineio, websocket), for profiling.", visibility: .hidden))
    var only: String?
    @Option(help: ArgumentHelp(
        "Run only the client, against `chatlog dev socketio-conformance` already listening on this loopback port.",
        visibility: .hidden))
    var connect: Int?

    static let payload = #"{"group":"design-12","username":"maria.k","id":"c-9f2c1a7e44","created":1795000000123,"message":"Sure, I'll push the fix after lunch, can you review?"}"#

    func run() async throws {
        guard events > 0, rounds > 0 else { throw ValidationError("--events and --rounds must be positive") }
        guard (1...1_000).contains(window) else { throw ValidationError("--window must be between 1 and 1000") }
        if let connect, !(1...65_535).contains(connect) { throw ValidationError("--connect must be a port, 1 to 65535") }
        var logger = Logger(label: "chatlog.bench")
        logger.logLevel = .critical  // cancelling the server at the end logs an error
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let app = ConformanceServer.application(port: 0, logger: logger, heartbeat: (.seconds(25), .seconds(20)),
                                                connectTimeout: .seconds(45)) { port in
            portContinuation.yield(port)
        }
        let events = self.events, window = self.window, rounds = self.rounds
        let echoes = Echo.allCases.filter { only == nil || "\($0)".lowercased() == only }
        if let connect {
            for echo in echoes {
                var rates: [Double] = []
                for _ in 0..<rounds { rates.append(try await Self.echo(echo, port: connect, events: events, window: window)) }
                print("\(echo) \(rates.sorted()[rounds / 2].rounded())")
            }
            return
        }
        let (socketIO, engineIO, plain) = try await withThrowingTaskGroup(of: (Double, Double, Double)?.self) { group in
            group.addTask {
                try await app.run()
                return nil
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            var rates: [Echo: [Double]] = [:]
            for _ in 0..<rounds {
                for echo in echoes {
                    rates[echo, default: []].append(try await Self.echo(echo, port: port, events: events, window: window))
                }
            }
            group.cancelAll()
            func median(_ echo: Echo) -> Double { (rates[echo] ?? Array(repeating: 0, count: rounds)).sorted()[rounds / 2] }
            return (median(.socketIO), median(.engineIO), median(.webSocket))
        }
        print(String(format: "Socket.IO event echo, one WebSocket:  %.0f events/s", socketIO))
        print(String(format: "Engine.IO message echo (baseline):   %.0f messages/s", engineIO))
        print(String(format: "plain WebSocket echo (baseline):     %.0f messages/s", plain))
        guard only == nil else { return }  // no ratios without the baselines
        struct Result: Encodable {
            var events: Int
            var window: Int
            var rounds: Int
            var socketio_echo_events_per_s: Double
            var engineio_echo_messages_per_s: Double
            var websocket_echo_messages_per_s: Double
            var socketio_vs_engineio: Double
            var socketio_vs_websocket: Double
        }
        print(resultLine(Result(events: events, window: window, rounds: rounds,
                              socketio_echo_events_per_s: socketIO.rounded(), engineio_echo_messages_per_s: engineIO.rounded(),
                              websocket_echo_messages_per_s: plain.rounded(),
                              socketio_vs_engineio: (socketIO / engineIO * 100).rounded() / 100,
                              socketio_vs_websocket: (socketIO / plain * 100).rounded() / 100)))
    }

    /// The client's own event loop thread: on one of the server's loops, the client and the
    /// server's side of the connection would share a thread in some runs and not in others.
    static let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    enum Echo: CaseIterable {
        case socketIO, engineIO, webSocket
    }

    /// One connection: `events` messages sent in batches, at most `window` unanswered; returns
    /// answers per second. The client runs on its own event loop thread (`EchoDriver`), so
    /// that the load generator costs the shared cores as little as it can.
    static func echo(_ echo: Echo, port: Int, events: Int, window: Int) async throws -> Double {
        let path = switch echo {
        case .socketIO: "/socket.io/?EIO=4&transport=websocket"
        case .engineIO: "/engine.io/?EIO=4&transport=websocket"
        case .webSocket: "/websocket-echo"
        }
        let (channel, driver, rate) = try await LoopbackWebSocket.connect(port: port, path: path, group: Self.clientGroup) { channel in
            let promise = channel.eventLoop.makePromise(of: Double.self)
            let driver = EchoDriver(echo: echo, events: events, window: window, done: promise)
            try channel.pipeline.syncOperations.addHandler(driver)
            return (channel, NIOLoopBound(driver, eventLoop: channel.eventLoop), promise.futureResult)
        }
        channel.eventLoop.execute { driver.value.go() }  // the upgrade is complete: writing is safe
        do {
            let result = try await rate.get()
            try? await channel.close()
            return result
        } catch {
            try? await channel.close()
            throw error
        }
    }
}

/// The benchmark's client: sends `window / batch` batches of the event, then a new batch each
/// time a batch's worth of answers arrived, all on the connection's event loop; answers
/// Engine.IO pings. Completes `done` with answers per second. Not thread-safe: owned by the
/// connection's event loop.
final class EchoDriver: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let echo: BenchWebSocket.Echo
    let events: Int
    let window: Int
    let batch: Int
    let done: EventLoopPromise<Double>
    private let message: ByteBuffer
    private let expectedPrefix: [UInt8]
    private var context: ChannelHandlerContext?
    private var started = false
    private var opened: Bool
    private var connectSent = false
    private var connectReplies = 0
    private var running = false
    private var sent = 0
    private var answered = 0
    private var start = ContinuousClock.now

    init(echo: BenchWebSocket.Echo, events: Int, window: Int, done: EventLoopPromise<Double>) {
        self.echo = echo
        self.events = events
        self.window = window
        self.batch = max(1, min(64, window / 2))
        self.done = done
        self.message = ByteBuffer(string: echo == .socketIO ? #"42["message",\#(BenchWebSocket.payload)]"# : "4" + BenchWebSocket.payload)
        self.expectedPrefix = Array((echo == .socketIO ? #"42["message-back","# : "4{").utf8)
        self.opened = echo == .webSocket  // no Engine.IO open packet to wait for
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Called once the upgrade is complete.
    func go() {
        started = true
        advance()
    }

    /// Moves through the handshake (Engine.IO open, Socket.IO CONNECT and its reply and
    /// `auth` event), then starts sending.
    private func advance() {
        guard started, !running, opened else { return }
        if echo == .socketIO {
            if !connectSent {
                connectSent = true
                write("40")
                context?.flush()
            }
            guard connectReplies >= 2 else { return }
        }
        running = true
        start = .now
        for _ in 0..<(window / batch) { sendBatch() }
    }

    private func write(_ text: String) {
        context?.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, maskKey: .fast(), data: ByteBuffer(string: text))), promise: nil)
    }

    private func sendBatch() {
        guard let context else { return }
        let count = min(batch, events - sent)
        guard count > 0 else { return }
        for _ in 0..<count {
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, maskKey: .fast(), data: message)), promise: nil)
        }
        sent += count
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .fast(), data: frame.unmaskedData)), promise: nil)
            return
        case .text:
            break
        default:
            return
        }
        let bytes = frame.data.readableBytesView
        if bytes.elementsEqual("2".utf8), echo != .webSocket {
            write("3")
            context.flush()
            return
        }
        guard running else {
            if !opened {
                opened = true
            } else if connectSent {
                connectReplies += 1
            }
            advance()
            return
        }
        guard bytes.starts(with: expectedPrefix) else { return }
        answered += 1
        if answered == events {
            done.succeed(Double(events) / seconds(since: start))
        } else if answered % batch == 0 {
            sendBatch()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(ChannelError.eof)  // no effect once completed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(error)
        context.close(promise: nil)
    }
}
