import Testing

@testable import SocketIO

/// Golden vectors from the Socket.IO v5 protocol README ("Packet encoding").
@Suite struct SocketPacketTests {
    static let placeholder0: JSONValue = .object([("_placeholder", .bool(true)), ("num", .number(0))])
    static let placeholder1: JSONValue = .object([("_placeholder", .bool(true)), ("num", .number(1))])

    struct Vector: Sendable, CustomStringConvertible {
        let packet: SocketPacket
        let text: String
        let attachments: [[UInt8]]
        var description: String { text }
    }

    static let vectors: [Vector] = [
        Vector(packet: SocketPacket(.connect), text: "0", attachments: []),
        Vector(packet: SocketPacket(.connect, data: .object([("sid", .string("wZX3oN0bSVIhsaknAAAI"))])),
               text: #"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#, attachments: []),
        Vector(packet: SocketPacket(.connect, namespace: "/admin"), text: "0/admin,", attachments: []),
        Vector(packet: SocketPacket(.connect, namespace: "/admin", data: .object([("sid", .string("oSO0OpakMV_3jnilAAAA"))])),
               text: #"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#, attachments: []),
        Vector(packet: SocketPacket(.connectError, data: .object([("message", .string("Not authorized"))])),
               text: #"4{"message":"Not authorized"}"#, attachments: []),
        Vector(packet: SocketPacket(.event, data: .array([.string("foo")])), text: #"2["foo"]"#, attachments: []),
        Vector(packet: SocketPacket(.event, namespace: "/admin", data: .array([.string("bar")])), text: #"2/admin,["bar"]"#, attachments: []),
        Vector(packet: SocketPacket(.event, data: .array([.string("baz"), .binary([1, 2, 3, 4])])),
               text: #"51-["baz",{"_placeholder":true,"num":0}]"#, attachments: [[1, 2, 3, 4]]),
        Vector(packet: SocketPacket(.event, namespace: "/admin", data: .array([.string("baz"), .binary([1, 2]), .binary([3, 4])])),
               text: #"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#, attachments: [[1, 2], [3, 4]]),
        Vector(packet: SocketPacket(.event, id: 12, data: .array([.string("foo")])), text: #"212["foo"]"#, attachments: []),
        Vector(packet: SocketPacket(.ack, id: 12, data: .array([])), text: "312[]", attachments: []),
        Vector(packet: SocketPacket(.event, namespace: "/admin", id: 13, data: .array([.string("foo")])), text: #"2/admin,13["foo"]"#, attachments: []),
        Vector(packet: SocketPacket(.ack, namespace: "/admin", id: 13, data: .array([.string("bar")])), text: #"3/admin,13["bar"]"#, attachments: []),
        Vector(packet: SocketPacket(.event, id: 14, data: .array([.string("foo"), .binary([1, 2, 3, 4])])),
               text: #"51-14["foo",{"_placeholder":true,"num":0}]"#, attachments: [[1, 2, 3, 4]]),
        Vector(packet: SocketPacket(.ack, id: 15, data: .array([.string("bar"), .binary([1, 2, 3, 4])])),
               text: #"61-15["bar",{"_placeholder":true,"num":0}]"#, attachments: [[1, 2, 3, 4]]),
        Vector(packet: SocketPacket(.disconnect), text: "1", attachments: []),
        Vector(packet: SocketPacket(.disconnect, namespace: "/admin"), text: "1/admin,", attachments: []),
    ]

    @Test(arguments: vectors)
    func encodesAsTheSpecificationShows(_ vector: Vector) {
        let (text, attachments) = vector.packet.encode()
        #expect(text == vector.text)
        #expect(attachments == vector.attachments)
    }

    @Test(arguments: vectors)
    func aDecodedPacketEncodesBackToTheSameText(_ vector: Vector) throws {
        // Relaying: the received payload text is copied, not re-serialized.
        let decoded = try SocketPacket.decode(vector.text)
        #expect(decoded.packet.encode().text == vector.text)
        #expect(decoded.packet.encode().attachments.isEmpty)
    }

    /// Re-encoding writes a received packet into a string sized beforehand for the longest
    /// header: the most attachments, the longest namespace and the largest ack id still fit.
    @Test func theLongestHeaderReEncodesWhole() throws {
        var limits = SocketPacket.Limits()
        limits.attachmentsMax = 9_999
        let namespace = "/" + String(repeating: "n", count: limits.namespaceBytesMax - 1)
        for text in ["59999-\(namespace),\(SocketPacket.ackIDMax)[\"e\",{\"_placeholder\":true,\"num\":0}]",
                     "2\(namespace),\(SocketPacket.ackIDMax)[\"e\"]", "3\(SocketPacket.ackIDMax)[]", "1\(namespace),"] {
            let decoded = try SocketPacket.decode(text, limits: limits)
            #expect(decoded.packet.encode().text == text)
        }
    }

    @Test func eventNameAndArgumentsComeFromTheReceivedText() throws {
        let decoded = try SocketPacket.decode(#"2/chat,7[ "send-group-message" , {"group":"g","text":"hi \"you\""}, 3]"#).packet
        #expect(decoded.eventName == "send-group-message")
        #expect(decoded.arguments == [.object([("group", .string("g")), ("text", .string("hi \"you\""))]), .number(3)])
        #expect(decoded.id == 7 && decoded.namespace == "/chat")
        let ack = try SocketPacket.decode(#"37[1,"two"]"#).packet
        #expect(ack.eventName == nil)
        #expect(ack.arguments == [.number(1), .string("two")])
        #expect(SocketPacket(.event, data: .array([.string("e"), .null])).eventName == "e")
    }

    @Test(arguments: vectors)
    func decodesWhatTheSpecificationShows(_ vector: Vector) throws {
        var assembler = SocketPacketAssembler()
        var packet = try assembler.receive(text: vector.text)
        for (index, attachment) in vector.attachments.enumerated() {
            #expect(packet == nil, "complete before attachment \(index)")
            packet = try assembler.receive(binary: attachment)
        }
        #expect(packet == vector.packet)
        #expect(assembler.attachmentsDue == 0)
    }

    @Test(arguments: [
        "", "9", "x", "2", "2{}", "2[]", "2[1]", "0[]", "0\"str\"", "1[]", "15", "3[]", "4[]",
        "5-[\"a\"]", "51[\"a\"]", "50-[\"a\"]", "599-[\"a\"]", "2[\"a\"", "2[\"a\"]x", "299999999999999999[\"a\"]",
        "2/" + String(repeating: "n", count: 200) + ",[\"a\"]",
    ])
    func malformedPacketsAreErrors(_ text: String) {
        var assembler = SocketPacketAssembler()
        #expect(throws: SocketIOProtocolError.self, "\(text.prefix(40))") { try assembler.receive(text: text) }
    }

    @Test func attachmentCountMismatchesAreErrors() throws {
        var assembler = SocketPacketAssembler()
        // Announces two attachments but references only one.
        #expect(try assembler.receive(text: #"52-["a",{"_placeholder":true,"num":0}]"#) == nil)
        #expect(try assembler.receive(binary: [1]) == nil)
        #expect(throws: SocketIOProtocolError.self) { try assembler.receive(binary: [2]) }
        // A placeholder past the attachments.
        var other = SocketPacketAssembler()
        _ = try other.receive(text: #"51-["a",{"_placeholder":true,"num":3}]"#)
        #expect(throws: SocketIOProtocolError.self) { try other.receive(binary: [1]) }
        // Placeholders that are numbers but name no attachment: beyond Int (found by the
        // fuzzer: `Int(_:)` trapped), fractional, negative.
        for num in ["211111111111111111111", "1e300", "0.5", "-1"] {
            var assembler = SocketPacketAssembler()
            _ = try assembler.receive(text: #"51-["a",{"_placeholder":true,"num":"# + num + "}]")
            #expect(throws: SocketIOProtocolError.self, "num \(num)") { try assembler.receive(binary: [1]) }
        }
        // Binary with nothing announced, and text while attachments are due.
        var third = SocketPacketAssembler()
        #expect(throws: SocketIOProtocolError.self) { try third.receive(binary: [1]) }
        _ = try third.receive(text: #"51-["a",{"_placeholder":true,"num":0}]"#)
        #expect(throws: SocketIOProtocolError.self) { try third.receive(text: #"2["b"]"#) }
    }

    @Test func attachmentBytesAreBounded() throws {
        var assembler = SocketPacketAssembler(attachmentBytesMax: 10)
        _ = try assembler.receive(text: #"52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        _ = try assembler.receive(binary: [UInt8](repeating: 0, count: 6))
        #expect(throws: SocketIOProtocolError.self) { try assembler.receive(binary: [UInt8](repeating: 0, count: 6)) }
    }

    @Test func randomTextNeverCrashesTheDecoder() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789-/,[]{}\":abc_placeholdernum true".unicodeScalars)
        for _ in 0..<20_000 {
            let count = Int.random(in: 0..<40, using: &generator)
            let text = String(String.UnicodeScalarView((0..<count).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] }))
            _ = try? SocketPacket.decode(text)
        }
    }
}

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

@Suite struct JSONParserTests {
    @Test(arguments: [
        ("null", JSONValue.null), ("true", .bool(true)), ("false", .bool(false)), ("0", .number(0)), ("-12.5e2", .number(-1250)),
        (#""a\"b\\c\/\n\u00e9\ud83d\ude00""#, .string("a\"b\\c/\né😀")), ("[]", .array([])), ("{}", .object([])),
        (#" { "a" : [1, {"b": null}] } "#, .object([("a", .array([.number(1), .object([("b", .null)])]))])),
    ])
    func parsesValidJSON(_ text: String, _ expected: JSONValue) throws {
        #expect(try JSONParser.parse(text) == expected)
    }

    @Test(arguments: ["", "nul", "01", "1.", "-", "1e", "[1,]", "{\"a\"}", "{\"a\":1,}", "\"\\x\"", "\"\\ud800\"",
                      "\"\\udc00x\"", "\"a", "[1] 2", "{1:2}", "\"\u{01}\"", "+1", ".5", "[", "{\"a\":"])
    func refusesInvalidJSON(_ text: String) {
        #expect(throws: SocketIOProtocolError.self, "\(text.debugDescription)") { try JSONParser.parse(text) }
    }

    @Test func nestingBombsAreRefusedNotRecursedInto() {
        let bomb = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: SocketIOProtocolError.self) { try JSONParser.parse(bomb) }
        let deepButFine = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        #expect(throws: Never.self) { try JSONParser.parse(deepButFine) }
    }

    @Test func invalidUTF8IsRefused() {
        #expect(throws: SocketIOProtocolError.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
    }

    @Test func serializedValuesParseBackEqual() throws {
        let value = JSONValue.object([("text", .string("line\n\"quoted\" \u{01} é")), ("n", .number(3)), ("f", .number(0.25)),
                                      ("list", .array([.bool(false), .null]))])
        let text = value.serialized()
        #expect(text == #"{"text":"line\n\"quoted\" \u0001 é","n":3,"f":0.25,"list":[false,null]}"#)
        #expect(try JSONParser.parse(text) == value)
    }

    /// The validator (used on receipt) and the parser (used when a value is asked for) must
    /// accept exactly the same texts, or a validated payload could fail to parse.
    @Test func theValidatorAcceptsExactlyWhatTheParserAccepts() {
        let seeds = [#"{"a":[1,2.5,"x\u00e9",{"b":true}],"c":null}"#, #"["ev",{"k":"v\n","n":-0.5e+3},[[]],{}]"#,
                     #""s\ud83d\ude00""#, "  [ 1 , 2 ]  ", "-0", "[\"é\",\"\\\"\"]", "true", "{\"\":false}",
                     // Strings longer than the scanners' sixteen-byte steps, escapes at odd places.
                     #"["send-group-message",{"message":"Sure, I'll push the fix \"after\" lunch, can you review?"}]"#,
                     #"{"long key with spaces and more":"0123456789abcdef0123456789abcdef\\","é":"ééééééééé"}"#]
        let alphabet = Array(#"[]{}",:0123456789.-+eEtrufalsn \/u\#u{1}é"#.utf8) + [0xFF, 0xC3]
        var generator = SystemRandomNumberGenerator()
        var disagreements: [String] = []
        func check(_ bytes: [UInt8]) {
            let parsed = (try? JSONParser.parse(bytes)) != nil
            let validated = bytes.withUnsafeBufferPointer { (try? JSONValidator.validate(buffer: $0)) != nil }
            if parsed != validated { disagreements.append(String(decoding: bytes, as: UTF8.self)) }
            // Text from a Swift string (valid UTF-8) takes the validator's other path.
            if String(validating: bytes, as: UTF8.self) != nil {
                let known = bytes.withUnsafeBufferPointer { (try? JSONValidator.validate(buffer: $0, utf8Known: true)) != nil }
                if parsed != known { disagreements.append("utf8Known: " + String(decoding: bytes, as: UTF8.self)) }
            }
        }
        for seed in seeds {
            let bytes = Array(seed.utf8)
            check(bytes)
            for _ in 0..<400 {
                // Mutate: replace, insert or delete one to three bytes.
                var mutated = bytes
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    let position = Int.random(in: 0...mutated.count, using: &generator)
                    let byte = alphabet.randomElement(using: &generator) ?? 0
                    switch Int.random(in: 0..<3, using: &generator) {
                    case 0 where position < mutated.count: mutated[position] = byte
                    case 1: mutated.insert(byte, at: position)
                    default: if position < mutated.count { mutated.remove(at: position) }
                    }
                }
                check(mutated)
            }
        }
        for depth in [31, 32, 33] {
            check(Array((String(repeating: "[", count: depth) + String(repeating: "]", count: depth)).utf8))
            check(Array((String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)).utf8))
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(5))")
    }

    /// The sixteen- and eight-byte scans find what a byte-by-byte loop finds, from every
    /// start, whatever the length and wherever the special byte is.
    @Test func theStringScanFindsTheFirstSpecialByte() {
        var generator = SystemRandomNumberGenerator()
        let specials: [UInt8] = [0x22, 0x5C, 0x00, 0x1F, 0x0A]
        let plain: [UInt8] = [0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x80, 0xC3, 0xFF, UInt8(ascii: "a")]
        var mismatches: [String] = []
        for length in 0...70 {
            for _ in 0..<20 {
                var bytes = (0..<length).map { _ in plain.randomElement(using: &generator) ?? 0x20 }
                for _ in 0..<Int.random(in: 0...2, using: &generator) where length > 0 {
                    bytes[Int.random(in: 0..<length, using: &generator)] = specials.randomElement(using: &generator) ?? 0
                }
                bytes.withUnsafeBufferPointer { buffer in
                    for start in 0...length {
                        let expected = bytes[start...].firstIndex { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 } ?? length
                        let found = ByteScan.firstSpecialIndex(in: buffer, from: start)
                        let (swar, _) = ByteScan.firstSpecial(in: buffer, from: start)
                        if found != expected || swar != expected { mismatches.append("\(bytes) from \(start): \(found), \(swar)") }
                    }
                }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3))")
    }

    @Test func theValidatorReportsTheTopLevelKind() throws {
        func kind(_ text: String) throws -> JSONValidator.Kind {
            try Array(text.utf8).withUnsafeBufferPointer { buffer in
                try Result { () throws(SocketIOProtocolError) -> JSONValidator.Kind in try JSONValidator.validate(buffer: buffer) }.get()
            }
        }
        #expect(try kind(#" ["a",1]"#) == .array(startsWithString: true))
        #expect(try kind(#"[1,"a"]"#) == .array(startsWithString: false))
        #expect(try kind(#"[["a"]]"#) == .array(startsWithString: false))
        #expect(try kind("[]") == .array(startsWithString: false))
        #expect(try kind(#"{"a":["b"]}"#) == .object)
        #expect(try kind(#""x""#) == .string)
        #expect(try kind("12") == .number)
        #expect(try kind("null") == .null)
    }

    @Test func everyTruncationOfAValidDocumentIsAnErrorNeverACrash() {
        let text = #"{"a":[1,2.5,"x\u00e9",{"b":true}],"c":null}"#
        let bytes = Array(text.utf8)
        for length in 0..<bytes.count {
            #expect(throws: SocketIOProtocolError.self) { try JSONParser.parse(bytes[..<length]) }
        }
    }
}
