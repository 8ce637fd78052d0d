import Testing
@testable import SocketIO

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
