/// A strict RFC 8259 JSON parser with limits, for payloads from the network.
///
/// It checks nesting depth before descending (a nesting bomb is an error, not a stack
/// overflow), validates UTF-8 and escapes, and refuses trailing garbage. Input size is the
/// caller's limit (Engine.IO's `maxPayload`). Stateless.
public enum JSONParser {
    public static let defaultDepthMax = 32

    /// Parses exactly one JSON value from `bytes`.
    /// - Throws: `SocketIOProtocolError.invalidJSON` saying what and where.
    public static func parse(_ bytes: some Collection<UInt8>, depthMax: Int = defaultDepthMax) throws(SocketIOProtocolError) -> JSONValue {
        if let result = bytes.withContiguousStorageIfAvailable({ buffer in
            Result { () throws(SocketIOProtocolError) -> JSONValue in try parse(buffer: buffer, depthMax: depthMax) }
        }) {
            return try result.get()
        }
        return try Array(bytes).withUnsafeBufferPointer { buffer in
            Result { () throws(SocketIOProtocolError) -> JSONValue in try parse(buffer: buffer, depthMax: depthMax) }
        }.get()
    }

    public static func parse(_ string: String, depthMax: Int = defaultDepthMax) throws(SocketIOProtocolError) -> JSONValue {
        var string = string
        return try string.withUTF8 { buffer in
            Result { () throws(SocketIOProtocolError) -> JSONValue in try parse(buffer: buffer, depthMax: depthMax) }
        }.get()
    }

    /// Parses exactly one value from contiguous bytes (the fast path every entry uses).
    public static func parse(buffer: UnsafeBufferPointer<UInt8>, depthMax: Int = defaultDepthMax) throws(SocketIOProtocolError) -> JSONValue {
        var parser = Parser(bytes: buffer, depthMax: depthMax)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == buffer.count else { throw parser.fail("unexpected bytes after the value") }
        return value
    }

    /// The depth limit for text `JSONValidator` already checked against its own limit.
    static let validatedDepthMax = 64

    /// The string that an array's text starts with (`["name", ...`), parsing nothing else;
    /// nil when it does not start so.
    static func leadingString(ofArray buffer: UnsafeBufferPointer<UInt8>) -> String? {
        var parser = Parser(bytes: buffer, depthMax: 1)
        parser.skipWhitespace()
        guard parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "[") else { return nil }
        parser.index += 1
        parser.skipWhitespace()
        guard parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "\"") else { return nil }
        return try? parser.string()
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        let depthMax: Int
        var index = 0

        func fail(_ message: String) -> SocketIOProtocolError {
            .invalidJSON("\(message) at byte \(index)")
        }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func expect(_ literal: StaticString, _ value: JSONValue) throws(SocketIOProtocolError) -> JSONValue {
            try JSONGrammar.scanLiteral(literal, bytes, &index)
            return value
        }

        mutating func value(depth: Int) throws(SocketIOProtocolError) -> JSONValue {
            guard index < bytes.count else { throw fail("unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "["):
                guard depth < depthMax else { throw fail("nesting deeper than \(depthMax)") }
                index += 1
                var items: [JSONValue] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .array(items)
                }
                while true {
                    skipWhitespace()
                    items.append(try value(depth: depth + 1))
                    skipWhitespace()
                    guard index < bytes.count else { throw fail("unterminated array") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                    throw fail("expected , or ] in array")
                }
            case UInt8(ascii: "{"):
                guard depth < depthMax else { throw fail("nesting deeper than \(depthMax)") }
                index += 1
                var members: [(String, JSONValue)] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    return .object(members)
                }
                while true {
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                    let key = try string()
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected :") }
                    index += 1
                    skipWhitespace()
                    members.append((key, try value(depth: depth + 1)))
                    skipWhitespace()
                    guard index < bytes.count else { throw fail("unterminated object") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                    throw fail("expected , or } in object")
                }
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .number(try number())
            default:
                throw fail("unexpected byte 0x\(String(bytes[index], radix: 16))")
            }
        }

        mutating func number() throws(SocketIOProtocolError) -> Double {
            let start = index
            let integer = try JSONGrammar.scanNumber(bytes, &index)
            // Plain integers (the common case) without going through a string.
            if integer, index - start <= 15 {
                var value: Int64 = 0
                var negative = false
                for position in start..<index {
                    if bytes[position] == UInt8(ascii: "-") { negative = true; continue }
                    value = value * 10 + Int64(bytes[position] - UInt8(ascii: "0"))
                }
                return Double(negative ? -value : value)
            }
            guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)) else {
                throw fail("invalid number")
            }
            return value
        }

        mutating func string() throws(SocketIOProtocolError) -> String {
            index += 1  // opening quote
            // Fast path: no escapes, so the string is exactly its bytes.
            let (end, sawNonASCII) = ByteScan.firstSpecial(in: bytes, from: index)
            let ascii = !sawNonASCII
            if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
                let run = UnsafeBufferPointer(rebasing: bytes[index..<end])
                let string = String(decoding: run, as: UTF8.self)
                guard ascii || string.utf8.elementsEqual(run) else { throw fail("invalid UTF-8 in string") }
                index = end + 1
                return string
            }
            var scalars = String.UnicodeScalarView()
            var runStart = index
            func flushRun(_ parser: Parser, _ end: Int, into scalars: inout String.UnicodeScalarView) throws(SocketIOProtocolError) {
                guard end > runStart else { return }
                guard let run = String(validating: UnsafeBufferPointer(rebasing: parser.bytes[runStart..<end]), as: UTF8.self) else {
                    throw parser.fail("invalid UTF-8 in string")
                }
                scalars.append(contentsOf: run.unicodeScalars)
            }
            while true {
                guard index < bytes.count else { throw fail("unterminated string") }
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    try flushRun(self, index, into: &scalars)
                    index += 1
                    return String(scalars)
                }
                if byte < 0x20 { throw fail("control character in string") }
                if byte != UInt8(ascii: "\\") {
                    index += 1
                    continue
                }
                try flushRun(self, index, into: &scalars)
                index += 1
                guard index < bytes.count else { throw fail("unterminated escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    let code = try JSONGrammar.unicodeEscape(bytes, &index)
                    guard let scalar = Unicode.Scalar(code) else { throw fail("invalid code point") }
                    scalars.append(scalar)
                default:
                    throw fail("invalid escape")
                }
                runStart = index
            }
        }
    }
}
