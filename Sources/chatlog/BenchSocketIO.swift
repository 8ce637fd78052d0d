import ArgumentParser
import Foundation
import SocketIO

struct BenchSocketIO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "socketio",
        abstract: "Socket.IO packet codec throughput on one core, against Foundation's JSON in the same run.",
        discussion: """
            Encodes and decodes a typical chat EVENT (about 150 bytes: the event name, a room, \
            a user, a client message id, a time and a sentence) --packets times on one thread. \
            The baseline, in the same run, round-trips the same packet's JSON through \
            Foundation's JSONSerialization. The last line is one JSON object: \
            codec_packets_per_s, foundation_json_packets_per_s, codec_vs_foundation, packet_bytes.
            """
    )

    @Option(help: "Packets to encode and decode.") var packets = 1_000_000
    @Flag(help: ArgumentHelp("Run (almost) no baseline, for profiling.", visibility: .hidden)) var codecOnly = false

    func run() async throws {
        let packet = SocketPacket(.event, data: .array([
            .string("send-group-message"),
            .object([("group", .string("design-12")), ("username", .string("maria.k")), ("id", .string("c-9f2c1a7e44")),
                     ("created", .number(1_795_000_000_123)), ("message", .string("Sure, I'll push the fix after lunch, can you review?"))]),
        ]))
        let text = "4" + packet.encode().text
        var checksum = 0
        let start = ContinuousClock.now
        for _ in 0..<packets {
            let encoded = packet.encode().text
            let decoded = try SocketPacket.decode(encoded)
            checksum &+= decoded.attachments &+ encoded.utf8.count
        }
        let codecRate = Double(packets) / seconds(since: start)

        let json = Data(packet.encode().text.dropFirst().utf8)
        let baselineCount = codecOnly ? 1 : max(1, packets / 4)
        let baselineStart = ContinuousClock.now
        for _ in 0..<baselineCount {
            let object = try JSONSerialization.jsonObject(with: json)
            let data = try JSONSerialization.data(withJSONObject: object)
            checksum &+= data.count
        }
        let baselineRate = Double(baselineCount) / seconds(since: baselineStart)
        print(String(format: "codec encode+decode: %.0f packets/s (%d-byte frame)", codecRate, text.utf8.count))
        print(String(format: "Foundation JSON round trip: %.0f packets/s", baselineRate))
        struct Result: Encodable {
            var packets: Int
            var packet_bytes: Int
            var codec_packets_per_s: Double
            var foundation_json_packets_per_s: Double
            var codec_vs_foundation: Double
            var checksum: Int
        }
        print(jsonLine(Result(packets: packets, packet_bytes: text.utf8.count, codec_packets_per_s: codecRate.rounded(),
                              foundation_json_packets_per_s: baselineRate.rounded(),
                              codec_vs_foundation: (codecRate / baselineRate * 100).rounded() / 100, checksum: checksum)))
    }
}
