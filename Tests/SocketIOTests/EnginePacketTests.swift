import Testing
@testable import SocketIO

@Suite struct EnginePacketTests {
    @Test func textFramesCarryTheTypeDigit() throws {
        #expect(EnginePacket(.ping, .text("probe")).textFrame == "2probe")
        #expect(EnginePacket.message("hello").textFrame == "4hello")
        #expect(EnginePacket(.noop).textFrame == "6")
        #expect(try EnginePacket.decode(textFrame: "3probe") == EnginePacket(.pong, .text("probe")))
        #expect(try EnginePacket.decode(textFrame: "5") == EnginePacket(.upgrade))
        #expect(throws: SocketIOProtocolError.self) { try EnginePacket.decode(textFrame: "") }
        #expect(throws: SocketIOProtocolError.self) { try EnginePacket.decode(textFrame: "7") }
        #expect(throws: SocketIOProtocolError.self) { try EnginePacket.decode(textFrame: "x") }
    }

    @Test func binaryMessagesAreRawFramesOnWebSocket() {
        #expect(EnginePacket(.message, .binary([1, 2, 3])).binaryFrame == [1, 2, 3])
        #expect(EnginePacket.decode(binaryFrame: [1, 2, 3]) == EnginePacket(.message, .binary([1, 2, 3])))
    }

    /// The Engine.IO v4 README's payload examples.
    @Test func pollingPayloadsMatchTheSpecification() throws {
        let payload = EnginePacket.encodePayload([.message("hello"), EnginePacket(.message, .binary([1, 2, 3, 4]))])
        #expect(payload == "4hello\u{1e}bAQIDBA==")
        #expect(EnginePacket.encodePayload([.message("hello"), .message("€€€")]) == "4hello\u{1e}4€€€")
        let decoded = try EnginePacket.decodePayload(Array("4hello\u{1e}bAQIDBA==\u{1e}2".utf8))
        #expect(decoded == [.message("hello"), EnginePacket(.message, .binary([1, 2, 3, 4])), EnginePacket(.ping)])
    }

    @Test func badPollingPayloadsAreErrors() {
        for body in ["", "4a\u{1e}", "\u{1e}4a", "8x", "bAQI", "b!!!!", "4a\u{1e}9"] {
            #expect(throws: SocketIOProtocolError.self, "\(body.debugDescription)") { try EnginePacket.decodePayload(Array(body.utf8)) }
        }
        #expect(throws: SocketIOProtocolError.self) { try EnginePacket.decodePayload([0x34, 0xFF, 0xFE]) }
        let many = Array(repeating: "6", count: 300).joined(separator: "\u{1e}")
        #expect(throws: SocketIOProtocolError.self) { try EnginePacket.decodePayload(Array(many.utf8), packetsMax: 256) }
    }

    @Test func base64RoundTripsEveryLength() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(($0 * 37 + 11) & 0xFF) }
            #expect(Base64.decode(Array(Base64.encode(bytes).utf8)) == bytes)
        }
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.encode(Array("fo".utf8)) == "Zm8=")
        #expect(Base64.decode(Array("Zm9=v".utf8)) == nil)
        #expect(Base64.decode(Array("Z===".utf8)) == nil)
    }
}
