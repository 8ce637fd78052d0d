import Testing

@testable import SocketIO

/// Reading and writing events' arguments without `JSONValue` trees (`JSONReader`,
/// `JSONOutput`, `SocketPacket.encodeEvent` / `readEventArguments`).
@Suite struct TypedEventTests {
    /// Rebuilds any value with the reader's cursor API alone, to compare with the parser.
    static func readValue(_ reader: inout JSONReader) throws(SocketIOProtocolError) -> JSONValue {
        switch reader.nextKind {
        case .null:
            _ = try reader.readNull()
            return .null
        case .bool: return .bool(try reader.readBool())
        case .number: return .number(try reader.readNumber())
        case .string: return .string(try reader.readString())
        case .array:
            try reader.beginArray()
            var items: [JSONValue] = []
            while try reader.nextElement() { items.append(try readValue(&reader)) }
            return .array(items)
        case .object:
            try reader.beginObject()
            var members: [(String, JSONValue)] = []
            while let key = try reader.nextMember() { members.append((key.string, try readValue(&reader))) }
            return .object(members)
        case nil:
            throw .invalidJSON("no value")
        }
    }

    static let documents = [
        #"{"a":[1,2.5,"x\u00e9",{"b":true}],"c":null}"#,
        #" [ "ev" , { "k" : "v\n\t\"q\"\\ \/" , "n" : -0.5e+3 } , [ [ ] ] , { } ] "#,
        #""s\ud83d\ude00 é""#, "-0", "1795000000123", "-9007199254740991", "1e300", "true", "false", "null",
        #"{"":false,"\u0061b":[null,[1,[2,[3]]]]}"#, #"[[],{},"",0]"#,
    ]

    @Test(arguments: documents)
    func theReaderReadsWhatTheParserParses(_ text: String) throws {
        let parsed = try JSONParser.parse(text)
        let read = try JSONReader.read(text) { reader throws(SocketIOProtocolError) in
            let value = try Self.readValue(&reader)
            #expect(reader.isAtEnd)
            return value
        }
        #expect(read == parsed)
        // Skipping passes over exactly the same value.
        try JSONReader.read(text) { reader throws(SocketIOProtocolError) in
            try reader.skipValue()
            #expect(reader.isAtEnd)
        }
    }

    @Test func keysCompareWithOrWithoutEscapes() throws {
        try JSONReader.read(#"{"group":1,"gro\u0075p":2,"groups":3}"#) { reader throws(SocketIOProtocolError) in
            try reader.beginObject()
            var matches: [Bool] = []
            while let key = try reader.nextMember() {
                matches.append(key == "group")
                try reader.skipValue()
            }
            #expect(matches == [true, true, false])
        }
    }

    /// `readInteger`'s path without a Double gives what the number's value gives: the same
    /// integer, or an error where the value is not an exact integer in JavaScript's range.
    @Test func integersReadAsTheirNumbersValue() {
        var generator = SystemRandomNumberGenerator()
        var texts = ["0", "-0", "7", "-7", "01", "-", "1e3", "1E3", "1.0", "1.5", "10.", "123456789012345", "1234567890123456",
                     "9007199254740991", "-9007199254740991", "9007199254740992", "99999999999999999999", "00", "-01"]
        for _ in 0..<300 {
            let digits = String((0..<Int.random(in: 1...18, using: &generator)).map { _ in "0123456789".randomElement(using: &generator) ?? "1" })
            texts.append((Bool.random(using: &generator) ? "-" : "") + digits)
        }
        var mismatches: [String] = []
        for text in texts {
            for context in ["\(text)", "[\(text)]", "[\(text) ,1]"] {
                func read(_ body: (inout JSONReader) throws(SocketIOProtocolError) -> Int64) -> Int64? {
                    try? JSONReader.read(context) { reader throws(SocketIOProtocolError) in
                        if context.hasPrefix("[") {
                            try reader.beginArray()
                            _ = try reader.nextElement()
                        }
                        let value = try body(&reader)
                        // The cursor is past the number and its whitespace, as after any value.
                        if context.hasPrefix("[") { _ = try reader.nextElement() } else if !reader.isAtEnd { throw .invalidJSON("left") }
                        return value
                    }
                }
                let integer = read { reader throws(SocketIOProtocolError) in try reader.readInteger() }
                let number = read { reader throws(SocketIOProtocolError) in
                    let value = try reader.readNumber()
                    guard value == value.rounded(), abs(value) <= 9_007_199_254_740_991 else { throw .invalidJSON("not an integer") }
                    return Int64(value)
                }
                if integer != number { mismatches.append("\(context): \(String(describing: integer)) vs \(String(describing: number))") }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5))")
    }

    /// Member names compare by their bytes, for every length around the comparison's steps.
    @Test func memberNamesCompareByEveryByte() throws {
        let names: [StaticString] = ["a", "ab", "abc", "abcd", "abcde", "abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmno",
                                     "abcdefghijklmnop", "abcdefghijklmnopq", "abcdefghijklmnopqrstuvwxyz"]
        for name in names {
            let text = name.description
            // The name itself, each one-byte change of it, and a name one byte shorter or longer.
            var candidates = [text, String(text.dropLast()), text + "z"]
            for position in 0..<text.utf8.count {
                var bytes = Array(text.utf8)
                bytes[position] = UInt8(ascii: "Z")
                candidates.append(String(decoding: bytes, as: UTF8.self))
            }
            for candidate in candidates {
                let matched = try JSONReader.read("{\"\(candidate)\":1}") { reader throws(SocketIOProtocolError) in
                    try reader.beginObject()
                    return try reader.nextMember().map { $0 == name } ?? false
                }
                #expect(matched == (candidate == text), "\(candidate) against \(text)")
            }
        }
    }

    @Test func typeMismatchesAreErrorsNotCrashes() {
        #expect(throws: SocketIOProtocolError.self) { try JSONReader.read("1") { reader throws(SocketIOProtocolError) in try reader.readString() } }
        #expect(throws: SocketIOProtocolError.self) { try JSONReader.read(#""a""#) { reader throws(SocketIOProtocolError) in try reader.readNumber() } }
        #expect(throws: SocketIOProtocolError.self) { try JSONReader.read("1.5") { reader throws(SocketIOProtocolError) in try reader.readInteger() } }
        #expect(throws: SocketIOProtocolError.self) {
            try JSONReader.read("9007199254740993") { reader throws(SocketIOProtocolError) in try reader.readInteger() }
        }
        #expect(throws: SocketIOProtocolError.self) { try JSONReader.read("[1]") { reader throws(SocketIOProtocolError) in try reader.beginObject() } }
        // Unchecked text: the cursor throws where the grammar breaks instead of reading on.
        #expect(throws: SocketIOProtocolError.self) {
            try JSONReader.read(#"{"a" 1}"#) { reader throws(SocketIOProtocolError) in try reader.skipValue() }
        }
        #expect(throws: SocketIOProtocolError.self) { try JSONReader.read(#"["a""#) { reader throws(SocketIOProtocolError) in try reader.skipValue() } }
    }

    /// The chat event the benchmark uses, as a type of its own.
    struct Message: Equatable {
        var group: String
        var username: String
        var id: String
        var created: Int64
        var message: String
        var tags: [String] = []

        func write(_ json: inout JSONOutput) {
            json.beginObject()
            json.key("group"); json.string(group)
            json.key("username"); json.string(username)
            json.key("id"); json.string(id)
            json.key("created"); json.integer(created)
            json.key("message"); json.string(message)
            json.key("tags"); json.beginArray(); for tag in tags { json.string(tag) }; json.endArray()
            json.endObject()
        }

        static func read(_ reader: inout JSONReader) throws(SocketIOProtocolError) -> Message {
            var message = Message(group: "", username: "", id: "", created: 0, message: "")
            try reader.beginObject()
            while let key = try reader.nextMember() {
                if key == "group" { message.group = try reader.readString() }
                else if key == "username" { message.username = try reader.readString() }
                else if key == "id" { message.id = try reader.readString() }
                else if key == "created" { message.created = try reader.readInteger() }
                else if key == "message" { message.message = try reader.readString() }
                else if key == "tags" {
                    try reader.beginArray()
                    while try reader.nextElement() { message.tags.append(try reader.readString()) }
                } else { try reader.skipValue() }
            }
            return message
        }
    }

    @Test func anEventWrittenFromValuesDecodesAndReadsBack() throws {
        let sent = Message(group: "design-12", username: "maría", id: "c-1", created: 1_795_000_000_123,
                           message: "line\n\"quoted\" \u{01} 👋", tags: ["a", "b"])
        let text = SocketPacket.encodeEvent("send-group-message", namespace: "/chat", id: 7) { json in
            sent.write(&json)
            json.integer(-2)
            json.value(.array([.bool(true), .null]))
        }
        let packet = try SocketPacket.decode(text).packet
        #expect(packet.namespace == "/chat" && packet.id == 7 && packet.eventName == "send-group-message")
        // The same text as the tree-built packet would have.
        #expect(packet.arguments.count == 3)
        #expect(packet.arguments[1] == .number(-2) && packet.arguments[2] == .array([.bool(true), .null]))
        let (received, rest) = try packet.readEventArguments { reader throws(SocketIOProtocolError) in
            guard try reader.nextElement() else { throw .invalidSocketPacket("no argument") }
            let message = try Message.read(&reader)
            var rest: [JSONValue] = []
            while try reader.nextElement() { rest.append(try Self.readValue(&reader)) }
            return (message, rest)
        }
        #expect(received == sent)
        #expect(rest == [JSONValue.number(-2), .array([.bool(true), .null])])
    }

    /// An ACK written straight into its text is the packet the tree-built one encodes to.
    @Test(arguments: ["/", "/chat"])
    func anAckWrittenFromValuesIsTheTreeBuiltOnesText(_ namespace: String) throws {
        let text = SocketPacket.encodeAck(namespace: namespace, id: 42) { json in
            json.beginObject()
            json.key("ok")
            json.bool(true)
            json.key("id")
            json.integer(1_234_567)
            json.endObject()
            json.string("second")
        }
        let tree = SocketPacket(.ack, namespace: namespace, id: 42,
                                data: .array([.object([("ok", .bool(true)), ("id", .number(1_234_567))]), .string("second")]))
        #expect(text == tree.encode().text)
        let decoded = try SocketPacket.decode(text).packet
        #expect(decoded.type == .ack && decoded.namespace == namespace && decoded.id == 42 && decoded.arguments.count == 2)
        #expect(SocketPacket.encodeAck(id: 0) { _ in } == "30[]")
    }

    @Test func anEventWithNoArgumentsAndAPacketBuiltFromValues() throws {
        #expect(SocketPacket.encodeEvent("ping") { _ in } == #"2["ping"]"#)
        // What JSON cannot hold as text is written as null: non-finite numbers, binary values.
        #expect(SocketPacket.encodeEvent("odd") { json in
            json.number(.nan)
            json.number(-.infinity)
            json.value(.array([.number(1), .binary([1])]))
            json.number(0.5)
        } == #"2["odd",null,null,null,0.5]"#)
        let built = SocketPacket(.event, data: .array([.string("hello"), .number(1)]))
        let first = try built.readEventArguments { reader throws(SocketIOProtocolError) in
            #expect(try reader.nextElement())
            return try reader.readInteger()
        }
        #expect(first == 1)
        #expect(throws: SocketIOProtocolError.self) {
            try SocketPacket(.ack, id: 1, data: .array([])).readEventArguments { _ throws(SocketIOProtocolError) in 0 }
        }
    }
}
