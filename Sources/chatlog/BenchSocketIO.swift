import ArgumentParser
import Foundation
import SocketIO

struct BenchSocketIO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "socketio",
        abstract: "Socket.IO packet codec throughput on one core, against Foundation's JSON in the same run.",
        discussion: """
            Round-trips a typical chat EVENT (about 170 bytes: the event name, a room, a user, \
            a client message id, a time and a sentence) on one thread, three ways: \
            relay (decode the received text, encode the decoded packet again, as a server \
            forwarding an event does), build (encode a packet built from values, then decode \
            it), and decode with arguments (decode, then build the arguments' values, as a \
            handler reading an event does). The baseline, in the same run, round-trips the \
            same JSON through Foundation's JSONSerialization. Each figure is the median of \
            --rounds rounds of --packets packets. The last line is one JSON object.
            """
    )

    @Option(help: "Packets per round.") var packets = 1_000_000
    @Option(help: "Rounds per figure (the median is reported).") var rounds = 3
    @Option(help: ArgumentHelp("Measure only this (relay, build, arguments), for profiling.", visibility: .hidden))
    var only: String?

    func run() async throws {
        guard packets > 0, rounds > 0 else { throw ValidationError("--packets and --rounds must be positive") }
        let packet = SocketPacket(.event, data: .array([
            .string("send-group-message"),
            .object([("group", .string("design-12")), ("username", .string("maria.k")), ("id", .string("c-9f2c1a7e44")),
                     ("created", .number(1_795_000_000_123)), ("message", .string("Sure, I'll push the fix after lunch, can you review?"))]),
        ]))
        let received = packet.encode().text
        var checksum = 0

        func median(_ name: String, _ body: () throws -> Int) rethrows -> Double {
            if let only, only != name { return 0 }
            var rates: [Double] = []
            for _ in 0..<rounds {
                let start = ContinuousClock.now
                checksum &+= try body()
                rates.append(Double(packets) / seconds(since: start))
            }
            return rates.sorted()[rates.count / 2]
        }

        let relay = try median("relay") {
            var sum = 0
            for _ in 0..<packets { sum &+= try SocketPacket.decode(received).packet.encode().text.utf8.count }
            return sum
        }
        let build = try median("build") {
            var sum = 0
            for _ in 0..<packets { sum &+= try SocketPacket.decode(packet.encode().text).attachments &+ 1 }
            return sum
        }
        let withArguments = try median("arguments") {
            var sum = 0
            for _ in 0..<packets { sum &+= try SocketPacket.decode(received).packet.arguments.count }
            return sum
        }
        let json = Data(received.dropFirst().utf8)
        let baselinePackets = only == nil ? max(1, packets / 20) : 1
        var baselineRates: [Double] = []
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            for _ in 0..<baselinePackets {
                let object = try JSONSerialization.jsonObject(with: json)
                checksum &+= try JSONSerialization.data(withJSONObject: object).count
            }
            baselineRates.append(Double(baselinePackets) / seconds(since: start))
        }
        let baseline = baselineRates.sorted()[baselineRates.count / 2]

        print(String(format: "relay (decode, encode again):   %.0f packets/s", relay))
        print(String(format: "build (encode values, decode):  %.0f packets/s", build))
        print(String(format: "decode with arguments:          %.0f packets/s", withArguments))
        print(String(format: "Foundation JSON round trip:     %.0f packets/s (%d-byte frame)", baseline, received.utf8.count + 1))
        struct Result: Encodable {
            var packets: Int
            var rounds: Int
            var packet_bytes: Int
            var relay_packets_per_s: Double
            var build_packets_per_s: Double
            var decode_with_arguments_packets_per_s: Double
            var foundation_json_packets_per_s: Double
            var relay_vs_foundation: Double
            var build_vs_foundation: Double
            var checksum: Int
        }
        func ratio(_ rate: Double) -> Double { (rate / baseline * 10).rounded() / 10 }
        print(jsonLine(Result(packets: packets, rounds: rounds, packet_bytes: received.utf8.count + 1,
                              relay_packets_per_s: relay.rounded(), build_packets_per_s: build.rounded(),
                              decode_with_arguments_packets_per_s: withArguments.rounded(),
                              foundation_json_packets_per_s: baseline.rounded(),
                              relay_vs_foundation: ratio(relay), build_vs_foundation: ratio(build), checksum: checksum)))
    }
}
