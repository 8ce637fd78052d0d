import ArgumentParser
import Foundation
import SocketIO

struct BenchSocketIO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "socketio",
        abstract: "Socket.IO packet codec throughput on one core, against Foundation's JSON in the same run.",
        discussion: """
            Round-trips a typical chat EVENT (the event name, a room, a user, a client message \
            id, a time and a sentence; --frame-bytes long as a WebSocket frame, 150 by default) \
            on one thread, four ways: \
            relay (decode the received text, encode the decoded packet again, as a server \
            forwarding an event does), build (encode a packet built from values, then decode \
            it), decode with arguments (decode, then build the arguments' values, as a \
            handler reading an event does) and typed (the event written from a struct of \
            its own and read back into one, with no JSON value tree, as the chat server's \
            handlers do). The baseline, in the same run, round-trips the \
            same JSON through Foundation's JSONSerialization. Each figure is the median of \
            --rounds rounds of --packets packets. The last line is one JSON object.
            """
    )

    @Option(help: "Packets per round.") var packets = 1_000_000
    @Option(help: "Size of the event's WebSocket frame (`4`, then the packet), set by the length of its sentence.")
    var frameBytes = 150
    @Option(help: "Rounds per figure (the median is reported).") var rounds = 3
    @Option(help: ArgumentHelp("Measure only this (relay, build, arguments, typed), for profiling.", visibility: .hidden))
    var only: String?

    func run() async throws {
        guard packets > 0, rounds > 0 else { throw ValidationError("--packets and --rounds must be positive") }
        func event(_ sentence: String) -> SocketPacket {
            SocketPacket(.event, data: .array([
                .string("send-group-message"),
                .object([("group", .string("design-12")), ("username", .string("maria.k")), ("id", .string("c-9f2c1a7e44")),
                         ("created", .number(1_795_000_000_123)), ("message", .string(sentence))]),
            ]))
        }
        // The frame without a sentence, then a sentence that fills it to --frame-bytes.
        let emptyFrameBytes = 1 + event("").encode().text.utf8.count
        guard frameBytes > emptyFrameBytes, frameBytes <= 1_000_000 else {
            throw ValidationError("--frame-bytes must be more than \(emptyFrameBytes) and at most 1000000")
        }
        let words = "Sure, I'll push the fix after lunch, can you review? "
        let sentence = String(String(repeating: words, count: frameBytes / words.utf8.count + 1).prefix(frameBytes - emptyFrameBytes))
        let packet = event(sentence)
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
        // Typed: the chat event as a struct of its own, written into the packet text and read
        // back from it, with no JSONValue tree (what a chat server's handlers do).
        let message = GroupMessage(group: "design-12", username: "maria.k", id: "c-9f2c1a7e44", created: 1_795_000_000_123,
                                   message: sentence)
        let typed = try median("typed") {
            var sum = 0
            for _ in 0..<packets {
                let text = SocketPacket.encodeEvent("send-group-message") { message.write(&$0) }
                let decoded = try SocketPacket.decode(text).packet.readEventArguments { reader throws(SocketIOProtocolError) in
                    guard try reader.nextElement() else { throw .invalidSocketPacket("no message") }
                    return try GroupMessage(reading: &reader)
                }
                sum &+= Int(decoded.created & 1) &+ decoded.message.utf8.count
            }
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
        print(String(format: "typed (encode struct, decode):  %.0f packets/s", typed))
        print(String(format: "Foundation JSON round trip:     %.0f packets/s (%d-byte frame)", baseline, received.utf8.count + 1))
        struct Result: Encodable {
            var packets: Int
            var rounds: Int
            var packet_bytes: Int
            var relay_packets_per_s: Double
            var build_packets_per_s: Double
            var decode_with_arguments_packets_per_s: Double
            var typed_packets_per_s: Double
            var foundation_json_packets_per_s: Double
            var relay_vs_foundation: Double
            var build_vs_foundation: Double
            var typed_vs_foundation: Double
            var checksum: Int
        }
        func ratio(_ rate: Double) -> Double { (rate / baseline * 10).rounded() / 10 }
        print(resultLine(Result(packets: packets, rounds: rounds, packet_bytes: received.utf8.count + 1,
                              relay_packets_per_s: relay.rounded(), build_packets_per_s: build.rounded(),
                              decode_with_arguments_packets_per_s: withArguments.rounded(), typed_packets_per_s: typed.rounded(),
                              foundation_json_packets_per_s: baseline.rounded(),
                              relay_vs_foundation: ratio(relay), build_vs_foundation: ratio(build),
                              typed_vs_foundation: ratio(typed), checksum: checksum)))
    }
}

/// The tutorial's group message as a type of its own, read from and written to Socket.IO
/// arguments without a JSON value tree.
struct GroupMessage {
    var group: String
    var username: String
    var id: String
    var created: Int64
    var message: String
}

// In an extension, so that the memberwise initializer stays: it builds the value in one
// piece, where a written one built it in memory and returned a copy (a retain and a release
// of each string).
extension GroupMessage {
    init(reading reader: inout JSONReader) throws(SocketIOProtocolError) {
        // Read into locals and moved in once: a throwing initializer that assigns its stored
        // properties as it goes copies them on the way out.
        var group = "", username = "", id = "", created: Int64 = 0, message = ""
        try reader.beginObject()
        while let key = try reader.nextMember() {
            if key == "group" {
                group = try reader.readString()
            } else if key == "username" {
                username = try reader.readString()
            } else if key == "id" {
                id = try reader.readString()
            } else if key == "created" {
                created = try reader.readInteger()
            } else if key == "message" {
                message = try reader.readString()
            } else {
                try reader.skipValue()
            }
        }
        self.init(group: consume group, username: consume username, id: consume id, created: created, message: consume message)
    }

    func write(_ json: inout JSONOutput) {
        json.beginObject()
        json.key("group")
        json.string(group)
        json.key("username")
        json.string(username)
        json.key("id")
        json.string(id)
        json.key("created")
        json.integer(created)
        json.key("message")
        json.string(message)
        json.endObject()
    }
}
