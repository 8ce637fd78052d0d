#if !SOCKETIO_FUZZ_SINGLE_MODULE
@testable import SocketIO
#endif

/// One fuzzing input through every decoder that reads bytes from the network, with the
/// properties that must hold whatever the bytes: no crash, no trap, bounded work, and
///
/// - the JSON validator accepts exactly what the parser accepts (on both of its paths);
/// - a polling body that decodes re-encodes to a body that decodes to the same packets;
/// - a Socket.IO packet that decodes re-encodes to an equal packet (relay), and its value,
///   built and encoded, is a fixed point of decoding and encoding;
/// - an Engine.IO session and a Socket.IO session fed the input as frames stay consistent.
///
/// `tools/fuzz.sh` runs it under libFuzzer; `FuzzCorpusTests` replays the committed corpus
/// (`Tests/SocketIOTests/FuzzCorpus/`) through it on every test run.
enum FuzzHarness {
    /// Checks one input; returns the first property that failed, or nil.
    static func check(_ bytes: [UInt8]) -> String? {
        // JSON: validator and parser agree.
        let parsed = (try? JSONParser.parse(bytes)) != nil
        let validated = bytes.withUnsafeBufferPointer { (try? JSONValidator.validate(buffer: $0)) != nil }
        if parsed != validated { return "validator \(validated) but parser \(parsed)" }
        // Received packets take the validator's other path: text already known to be UTF-8.
        if String(validating: bytes, as: UTF8.self) != nil {
            let known = bytes.withUnsafeBufferPointer { (try? JSONValidator.validate(buffer: $0, utf8Known: true)) != nil }
            if parsed != known { return "validator (UTF-8 known) \(known) but parser \(parsed)" }
        }

        // Engine.IO polling payloads.
        if let packets = try? EnginePacket.decodePayload(bytes) {
            let again = try? EnginePacket.decodePayload(Array(EnginePacket.encodePayload(packets).utf8))
            if again != packets { return "a polling payload did not survive re-encoding" }
        }

        // Socket.IO packets, from the text of the input.
        if let text = String(validating: bytes, as: UTF8.self) {
            if let decoded = try? SocketPacket.decode(text) {
                if decoded.packet.encode().text != text {
                    // Relaying copies the payload; only the header may be normalised.
                    guard let again = try? SocketPacket.decode(decoded.packet.encode().text), again.packet == decoded.packet else {
                        return "a decoded packet did not re-encode to an equal packet"
                    }
                }
                if decoded.attachments == 0 {
                    // Built from its value, the packet encodes to a fixed point: text that
                    // decodes and encodes to itself. (Not always the received text: numbers
                    // beyond a double become infinite, and infinity is written `null`, as
                    // JavaScript's JSON does.)
                    var rebuilt = decoded.packet
                    rebuilt.data = decoded.packet.data
                    let text = rebuilt.encode().text
                    guard var again = (try? SocketPacket.decode(text))?.packet else {
                        return "a packet built from the decoded value does not decode"
                    }
                    let value = again.data
                    again.data = value
                    guard again.encode().text == text else {
                        return "a packet built from the decoded value is not a fixed point of encode and decode"
                    }
                } else if let assembled = try? decoded.packet.withAttachments((0..<decoded.attachments).map { [UInt8($0)] }) {
                    // A binary packet: its value with the attachments in it travels the same way.
                    let (text, attachments) = assembled.encode()
                    var assembler = SocketPacketAssembler()
                    var received = try? assembler.receive(text: text)
                    for attachment in attachments { received = try? assembler.receive(binary: attachment) }
                    if received != assembled { return "a binary packet did not survive encoding with its attachments" }
                }
            }
            // The whole input as frames of one connection: a text frame per line.
            var engine = EngineSession.open(sid: "fuzz", transport: .websocket, configuration: EngineConfiguration(), now: .now).0
            var socket = SocketSession(configuration: SocketSession.Configuration(), openedAt: .now)
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                guard let packet = try? EnginePacket.decode(textFrame: String(line)) else { continue }
                for action in engine.frameArrived(packet) {
                    guard case .deliver(let payloads) = action else { continue }
                    for payload in payloads {
                        for reaction in socket.received(payload, now: .now) {
                            if case .authorize(let namespace, _, _) = reaction {
                                _ = socket.accept(namespace: namespace, socketID: "s")
                            }
                        }
                    }
                }
            }
        }
        return nil
    }
}
