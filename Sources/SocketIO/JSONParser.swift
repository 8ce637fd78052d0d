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
            let count = literal.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw fail("invalid literal") }
            let matches = literal.withUTF8Buffer { expected in
                (0..<count).allSatisfy { bytes[index + $0] == expected[$0] }
            }
            guard matches else { throw fail("invalid literal") }
            index += count
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
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            func digits(_ parser: inout Parser) -> Int {
                let from = parser.index
                while parser.index < parser.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(parser.bytes[parser.index]) {
                    parser.index += 1
                }
                return parser.index - from
            }
            guard index < bytes.count else { throw fail("unterminated number") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else if digits(&self) == 0 {
                throw fail("expected a digit")
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits(&self) > 0 else { throw fail("expected a digit after .") }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits(&self) > 0 else { throw fail("expected a digit in the exponent") }
            }
            // Plain integers (the common case) without going through a string.
            let digitsOnly = (start..<index).allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[$0]) || ($0 == start && bytes[$0] == UInt8(ascii: "-")) }
            if digitsOnly, index - start <= 15 {
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

        mutating func hex4() throws(SocketIOProtocolError) -> UInt32 {
            guard index + 4 <= bytes.count else { throw fail("short \\u escape") }
            var value: UInt32 = 0
            for byte in bytes[index..<(index + 4)] {
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: throw fail("invalid hex digit in \\u escape")
                }
                value = value << 4 | digit
            }
            index += 4
            return value
        }

        mutating func string() throws(SocketIOProtocolError) -> String {
            index += 1  // opening quote
            // Fast path: no escapes, so the string is exactly its bytes.
            var end = index
            var ascii = true
            while end < bytes.count {
                let byte = bytes[end]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                if byte >= 0x80 { ascii = false }
                end += 1
            }
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
                    var code = try hex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw fail("lone high surrogate")
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("invalid low surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(code) {
                        throw fail("lone low surrogate")
                    }
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
