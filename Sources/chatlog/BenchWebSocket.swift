import ArgumentParser
import ChatServer
import Foundation
import Hummingbird
import LoopbackWebSocket
import Logging

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
            (Hummingbird's WebSocket alone: the transport's ceiling). Each figure is the \
            median of --rounds rounds. The last line is one JSON object.
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
        print(jsonLine(Result(events: events, window: window, rounds: rounds,
                              socketio_echo_events_per_s: socketIO.rounded(), engineio_echo_messages_per_s: engineIO.rounded(),
                              websocket_echo_messages_per_s: plain.rounded(),
                              socketio_vs_engineio: (socketIO / engineIO * 100).rounded() / 100,
                              socketio_vs_websocket: (socketIO / plain * 100).rounded() / 100)))
    }

    enum Echo: CaseIterable {
        case socketIO, engineIO, webSocket
    }

    /// One connection: `events` messages sent in batches, at most `window` unanswered; returns
    /// answers per second.
    static func echo(_ echo: Echo, port: Int, events: Int, window: Int) async throws -> Double {
        let path = switch echo {
        case .socketIO: "/socket.io/?EIO=4&transport=websocket"
        case .engineIO: "/engine.io/?EIO=4&transport=websocket"
        case .webSocket: "/websocket-echo"
        }
        let message: LoopbackWebSocket.Message = .text(echo == .socketIO ? #"42["message",\#(payload)]"# : "4" + payload)
        let expectedPrefix = echo == .socketIO ? #"42["message-back","# : "4{"
        return try await LoopbackWebSocket.withConnection(port: port, path: path) { inbound, outbound in
            if echo != .webSocket { _ = try await inbound.next() }  // the open packet
            if echo == .socketIO {
                try await outbound.send(.text("40"))
                _ = try await inbound.next()  // CONNECT reply
                _ = try await inbound.next()  // "auth"
            }
            let batch = max(1, min(64, window / 2))
            let (credits, grant) = AsyncStream<Void>.makeStream()
            for _ in 0..<(window / batch) { grant.yield() }
            let start = ContinuousClock.now
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var sent = 0
                    for await _ in credits {
                        let count = min(batch, events - sent)
                        try await outbound.send(contentsOf: Array(repeating: message, count: count))
                        sent += count
                        if sent == events { return }
                    }
                }
                var answered = 0
                while answered < events {
                    guard case .text(let text)? = try await inbound.next() else { throw CancellationError() }
                    if text == "2" {
                        try await outbound.send(.text("3"))
                        continue
                    }
                    guard text.hasPrefix(expectedPrefix) else { continue }
                    answered += 1
                    if answered % batch == 0 { grant.yield() }
                }
                grant.finish()
                try await group.waitForAll()
                return Double(events) / seconds(since: start)
            }
        }
    }
}
