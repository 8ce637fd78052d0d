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
