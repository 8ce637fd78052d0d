/// Checks that bytes are exactly one JSON value, by the same grammar and limits as
/// `JSONParser`, without building it: no allocation, one pass. `SocketPacket.decode` uses it
/// so that a received payload is fully checked at once while its value is built only when
/// someone asks for it (`SocketPacket.data`).
///
/// Whatever `validate` accepts, `JSONParser.parse` accepts, and the other way round (a
/// property test holds them to it). Stateless.
public enum JSONValidator {
    /// What kind of value the text holds at its top level.
    public enum Kind: Sendable, Equatable {
        case null, bool, number, string
        /// An array; `startsWithString` when its first element is a string.
        case array(startsWithString: Bool)
        case object
    }

    /// Checks `buffer` and returns the kind of its top-level value.
    /// - Parameter depthMax: as the parser's; at most 64 (larger values count as 64).
    /// - Parameter utf8Known: the bytes are already known to be valid UTF-8 (they come from
    ///   a Swift `String`), so non-ASCII bytes in strings need no second look.
    /// - Throws: `SocketIOProtocolError.invalidJSON`, as the parser would.
    public static func validate(
        buffer: UnsafeBufferPointer<UInt8>,
        depthMax: Int = JSONParser.defaultDepthMax,
        utf8Known: Bool = false
    ) throws(SocketIOProtocolError) -> Kind {
        var scanner = Scanner(bytes: buffer, depthMax: min(depthMax, Scanner.depthLimit), utf8Known: utf8Known)
        scanner.skipWhitespace()
        let kind = try scanner.document()
        scanner.skipWhitespace()
        guard scanner.index == buffer.count else { throw scanner.fail("unexpected bytes after the value") }
        return kind
    }

    private struct Scanner {
        /// Containers are tracked in a 64-bit stack (one bit each: object or array).
        static let depthLimit = 64

        let bytes: UnsafeBufferPointer<UInt8>
        let depthMax: Int
        let utf8Known: Bool
        var index = 0

        func fail(_ message: String) -> SocketIOProtocolError {
            .invalidJSON("\(message) at byte \(index)")
        }

        @inline(__always)
        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        /// One value, iteratively: containers push a bit instead of recursing.
        mutating func document() throws(SocketIOProtocolError) -> Kind {
            var stack: UInt64 = 0  // one bit per open container, set for an object
            var depth = 0
            var kind = Kind.null
            var firstElement = false  // the top-level array's first element comes next
            while true {
                // A value starts here.
                guard index < bytes.count else { throw fail("unexpected end") }
                let byte = bytes[index]
                if firstElement {
                    firstElement = false
                    if byte == UInt8(ascii: "\"") { kind = .array(startsWithString: true) }
                }
                switch byte {
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    guard depth < depthMax else { throw fail("nesting deeper than \(depthMax)") }
                    let isObject = byte == UInt8(ascii: "{")
                    if depth == 0 { kind = isObject ? .object : .array(startsWithString: false) }
                    index += 1
                    skipWhitespace()
                    if index < bytes.count, bytes[index] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                        index += 1  // empty: already a complete value
                    } else {
                        stack = stack << 1 | (isObject ? 1 : 0)
                        depth += 1
                        if isObject { try memberName() } else if depth == 1 { firstElement = true }
                        continue
                    }
                case UInt8(ascii: "\""):
                    try string()
                    if depth == 0 { kind = .string }
                case UInt8(ascii: "n"):
                    try literal("null")
                case UInt8(ascii: "t"):
                    try literal("true")
                    if depth == 0 { kind = .bool }
                case UInt8(ascii: "f"):
                    try literal("false")
                    if depth == 0 { kind = .bool }
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    _ = try JSONGrammar.scanNumber(bytes, &index)
                    if depth == 0 { kind = .number }
                default:
                    throw fail("unexpected byte 0x\(String(byte, radix: 16))")
                }
                // After a value: close containers, or move on to the next element or member.
                while true {
                    guard depth > 0 else { return kind }
                    skipWhitespace()
                    let isObject = stack & 1 == 1
                    guard index < bytes.count else { throw fail(isObject ? "unterminated object" : "unterminated array") }
                    let next = bytes[index]
                    if next == UInt8(ascii: ",") {
                        index += 1
                        skipWhitespace()
                        if isObject { try memberName() }
                        break
                    }
                    guard next == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) else {
                        throw fail(isObject ? "expected , or } in object" : "expected , or ] in array")
                    }
                    index += 1
                    stack >>= 1
                    depth -= 1
                }
            }
        }

        /// `"name"` and `:` of an object member, then whitespace before its value.
        @inline(__always)
        mutating func memberName() throws(SocketIOProtocolError) {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            try string()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected :") }
            index += 1
            skipWhitespace()
        }

        mutating func literal(_ text: StaticString) throws(SocketIOProtocolError) {
            try JSONGrammar.scanLiteral(text, bytes, &index)
        }

        @inline(__always)
        mutating func string() throws(SocketIOProtocolError) {
            index += 1  // opening quote
            guard utf8Known else { return try stringCheckingUTF8() }
            // The common case, small enough to inline: no UTF-8 to check.
            while true {
                index = ByteScan.firstSpecialIndex(in: bytes, from: index)
                guard index < bytes.count else { throw fail("unterminated string") }
                if bytes[index] == UInt8(ascii: "\"") {
                    index += 1
                    return
                }
                try escapeSequence()
            }
        }

        /// The rest of a string after its opening quote, its non-ASCII runs checked.
        mutating func stringCheckingUTF8() throws(SocketIOProtocolError) {
            var runStart = index
            var ascii = true
            while true {
                let (found, sawNonASCII) = ByteScan.firstSpecial(in: bytes, from: index)
                if sawNonASCII { ascii = false }
                index = found
                guard index < bytes.count else { throw fail("unterminated string") }
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    try checkRun(runStart, ascii: ascii)
                    index += 1
                    return
                }
                if byte < 0x20 { throw fail("control character in string") }
                try checkRun(runStart, ascii: ascii)
                try escapeSequence()
                ascii = true
                runStart = index
            }
        }

        /// At a string's byte that is neither its closing quote nor plain: a backslash and
        /// its escape (the index moves past them), or a control character (an error).
        mutating func escapeSequence() throws(SocketIOProtocolError) {
            if bytes[index] < 0x20 { throw fail("control character in string") }
            index += 1  // the backslash
            guard index < bytes.count else { throw fail("unterminated escape") }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                 UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                break
            case UInt8(ascii: "u"):
                _ = try JSONGrammar.unicodeEscape(bytes, &index)
            default:
                throw fail("invalid escape")
            }
        }

        /// Non-ASCII runs of a string must be valid UTF-8 (unless the caller knows they are).
        func checkRun(_ start: Int, ascii: Bool) throws(SocketIOProtocolError) {
            guard !ascii, index > start else { return }
            guard String(validating: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self) != nil else {
                throw fail("invalid UTF-8 in string")
            }
        }
    }
}
