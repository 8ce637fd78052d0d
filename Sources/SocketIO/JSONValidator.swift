import CByteScan

/// Checks that bytes are exactly one JSON value, by the same grammar and limits as
/// `JSONParser`, without building it: no allocation, one pass. `SocketPacket.decode` uses it
/// so that a received payload is fully checked at once while its value is built only when
/// someone asks for it (`SocketPacket.data`).
///
/// Whatever `validate` accepts, `JSONParser.parse` accepts, and the other way round (a
/// property test holds them to it). Stateless.
///
/// It runs on every received packet, so it is written for speed: one function whose cursor is
/// a pointer held in a register, containers tracked as bits instead of by recursion, strings
/// skipped sixteen bytes at a time (`chatlog_json_first_special`), plain integers read in
/// place, and whitespace looked for only where a byte ≤ 0x20 is.
public enum JSONValidator {
    /// What kind of value the text holds at its top level.
    public enum Kind: Sendable, Equatable {
        case null, bool, number, string
        /// An array; `startsWithString` when its first element is a string.
        case array(startsWithString: Bool)
        case object
    }

    /// Containers are tracked in a 64-bit stack (one bit each: object or array).
    static let depthLimit = 64

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
        guard let start = buffer.baseAddress, !buffer.isEmpty else { throw failure("unexpected end", at: 0) }
        return try document(start: start, end: start + buffer.count, depthMax: min(depthMax, depthLimit), utf8Known: utf8Known)
    }

    static func failure(_ message: String, at offset: Int) -> SocketIOProtocolError {
        .invalidJSON("\(message) at byte \(offset)")
    }

    /// The whole text: one value between optional whitespace. Iterative: containers push a
    /// bit instead of recursing.
    private static func document(
        start: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>, depthMax: Int, utf8Known: Bool
    ) throws(SocketIOProtocolError) -> Kind {
        var p = start
        func fail(_ message: String) -> SocketIOProtocolError { failure(message, at: p - start) }

        var stack: UInt64 = 0  // one bit per open container, set for an object
        var depth = 0
        var kind = Kind.null
        var firstElement = false  // the top-level array's first element comes next
        skipWhitespace(&p, end)
        while true {
            // A value starts here.
            guard p < end else { throw fail("unexpected end") }
            let byte = p.pointee
            if firstElement {
                firstElement = false
                if byte == UInt8(ascii: "\"") { kind = .array(startsWithString: true) }
            }
            switch byte {
            case UInt8(ascii: "\""):
                try string(&p, start: start, end: end, utf8Known: utf8Known)
                if depth == 0 { kind = .string }
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                guard depth < depthMax else { throw fail("nesting deeper than \(depthMax)") }
                let isObject = byte == UInt8(ascii: "{")
                if depth == 0 { kind = isObject ? .object : .array(startsWithString: false) }
                p += 1
                skipWhitespace(&p, end)
                if p < end, p.pointee == byte &+ 2 {  // `]` and `}` follow `[` and `{` by two
                    p += 1  // empty: already a complete value
                } else {
                    stack = stack << 1 | (isObject ? 1 : 0)
                    depth += 1
                    if isObject {
                        try memberName(&p, start: start, end: end, utf8Known: utf8Known)
                    } else if depth == 1 {
                        firstElement = true
                    }
                    continue
                }
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                try number(&p, start: start, end: end)
                if depth == 0 { kind = .number }
            case UInt8(ascii: "n"):
                try literal("null", &p, start: start, end: end)
            case UInt8(ascii: "t"):
                try literal("true", &p, start: start, end: end)
                if depth == 0 { kind = .bool }
            case UInt8(ascii: "f"):
                try literal("false", &p, start: start, end: end)
                if depth == 0 { kind = .bool }
            default:
                throw fail("unexpected byte 0x\(String(byte, radix: 16))")
            }
            // After a value: close containers, or move on to the next element or member.
            while true {
                guard depth > 0 else {
                    skipWhitespace(&p, end)
                    guard p == end else { throw fail("unexpected bytes after the value") }
                    return kind
                }
                skipWhitespace(&p, end)
                let isObject = stack & 1 == 1
                guard p < end else { throw fail(isObject ? "unterminated object" : "unterminated array") }
                let next = p.pointee
                if next == UInt8(ascii: ",") {
                    p += 1
                    skipWhitespace(&p, end)
                    if isObject { try memberName(&p, start: start, end: end, utf8Known: utf8Known) }
                    break
                }
                guard next == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) else {
                    throw fail(isObject ? "expected , or } in object" : "expected , or ] in array")
                }
                p += 1
                stack >>= 1
                depth -= 1
            }
        }
    }

    @inline(__always)
    private static func skipWhitespace(_ p: inout UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) {
        // Every whitespace byte is ≤ 0x20: most calls look at one byte and stop.
        while p < end, p.pointee <= 0x20 {
            switch p.pointee {
            case 0x20, 0x09, 0x0A, 0x0D: p += 1
            default: return
            }
        }
    }

    /// `"name"` and `:` of an object member, then whitespace before its value.
    @inline(__always)
    private static func memberName(
        _ p: inout UnsafePointer<UInt8>, start: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>, utf8Known: Bool
    ) throws(SocketIOProtocolError) {
        guard p < end, p.pointee == UInt8(ascii: "\"") else { throw failure("expected a member name", at: p - start) }
        try string(&p, start: start, end: end, utf8Known: utf8Known)
        skipWhitespace(&p, end)
        guard p < end, p.pointee == UInt8(ascii: ":") else { throw failure("expected :", at: p - start) }
        p += 1
        skipWhitespace(&p, end)
    }

    /// A string from its opening quote; `p` ends past its closing quote.
    @inline(__always)
    private static func string(
        _ p: inout UnsafePointer<UInt8>, start: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>, utf8Known: Bool
    ) throws(SocketIOProtocolError) {
        p += 1  // opening quote
        guard utf8Known else { return try stringCheckingUTF8(&p, start: start, end: end) }
        // The common case, small enough to inline: no UTF-8 to check.
        while true {
            // From the text's start, so that the scan may look back at bytes before `p`.
            p = start + chatlog_json_first_special(start, p - start, end - start)
            guard p < end else { throw failure("unterminated string", at: p - start) }
            if p.pointee == UInt8(ascii: "\"") {
                p += 1
                return
            }
            try escapeSequence(&p, start: start, end: end)
        }
    }

    /// The rest of a string after its opening quote, its non-ASCII runs checked.
    private static func stringCheckingUTF8(
        _ p: inout UnsafePointer<UInt8>, start: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>
    ) throws(SocketIOProtocolError) {
        let bytes = UnsafeBufferPointer(start: start, count: end - start)
        var runStart = p - start
        var ascii = true
        /// Non-ASCII runs of a string must be valid UTF-8.
        func checkRun(to index: Int) throws(SocketIOProtocolError) {
            guard !ascii, index > runStart else { return }
            guard String(validating: UnsafeBufferPointer(rebasing: bytes[runStart..<index]), as: UTF8.self) != nil else {
                throw failure("invalid UTF-8 in string", at: index)
            }
        }
        while true {
            let (found, sawNonASCII) = ByteScan.firstSpecial(in: bytes, from: p - start)
            if sawNonASCII { ascii = false }
            p = start + found
            guard p < end else { throw failure("unterminated string", at: found) }
            if p.pointee == UInt8(ascii: "\"") {
                try checkRun(to: found)
                p += 1
                return
            }
            if p.pointee < 0x20 { throw failure("control character in string", at: found) }
            try checkRun(to: found)
            try escapeSequence(&p, start: start, end: end)
            ascii = true
            runStart = p - start
        }
    }

    /// At a string's byte that is neither its closing quote nor plain: a backslash and
    /// its escape (`p` moves past them), or a control character (an error).
    private static func escapeSequence(
        _ p: inout UnsafePointer<UInt8>, start: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>
    ) throws(SocketIOProtocolError) {
        if p.pointee < 0x20 { throw failure("control character in string", at: p - start) }
        p += 1  // the backslash
        guard p < end else { throw failure("unterminated escape", at: p - start) }
        let escape = p.pointee
        p += 1
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
             UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            break
        case UInt8(ascii: "u"):
            var index = p - start
            _ = try JSONGrammar.unicodeEscape(UnsafeBufferPointer(start: start, count: end - start), &index)
            p = start + index
        default:
            throw failure("invalid escape", at: p - start)
        }
    }

    /// A number, as `JSONGrammar.scanNumber` reads it: a plain integer (the common case)
    /// here, anything else there.
    @inline(__always)
    private static func number(
        _ p: inout UnsafePointer<UInt8>, start: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>
    ) throws(SocketIOProtocolError) {
        var q = p
        if q.pointee == UInt8(ascii: "-") { q += 1 }
        // `[1-9][0-9]*` followed by a byte that cannot continue a number.
        if q < end, q.pointee &- UInt8(ascii: "1") < 9 {
            q += 1
            while q < end, q.pointee &- UInt8(ascii: "0") < 10 { q += 1 }
            if q == end || !JSONGrammar.continuesNumber(q.pointee) {
                p = q
                return
            }
        }
        var index = p - start
        _ = try JSONGrammar.scanNumber(UnsafeBufferPointer(start: start, count: end - start), &index)
        p = start + index
    }

    @inline(__always)
    private static func literal(
        _ text: StaticString, _ p: inout UnsafePointer<UInt8>, start: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>
    ) throws(SocketIOProtocolError) {
        let count = text.utf8CodeUnitCount
        guard end - p >= count else { throw failure("invalid literal", at: p - start) }
        for offset in 0..<count where p[offset] != text.utf8Start[offset] {
            throw failure("invalid literal", at: p - start)
        }
        p += count
    }
}
