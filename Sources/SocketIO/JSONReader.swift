import CByteScan

/// Reads JSON text value by value, into the caller's own types, without building a
/// `JSONValue` tree: a cursor over the bytes. For text that `JSONValidator` (or
/// `SocketPacket.decode`) has already checked; on other text it throws where the grammar is
/// broken rather than reading past it.
///
/// A reader borrows its bytes: it is valid only inside the closure that hands it out
/// (`SocketPacket.readEventArguments`, `JSONReader.read`).
///
///     try packet.readEventArguments { reader in
///         try reader.beginObject()
///         while let key = try reader.nextMember() {
///             if key == "group" { group = try reader.readString() } else { try reader.skipValue() }
///         }
///     }
public struct JSONReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var index: Int
    /// Whether the next element of the current container is its first (no comma before it).
    private var atFirstElement = false

    @usableFromInline
    init(bytes: UnsafeBufferPointer<UInt8>, index: Int = 0) {
        self.bytes = bytes
        self.index = index
        skipWhitespace()
    }

    /// Runs `body` with a reader over `text`, which must be checked JSON (`JSONValidator`).
    public static func read<R>(
        _ text: String,
        _ body: (inout JSONReader) throws(SocketIOProtocolError) -> R
    ) throws(SocketIOProtocolError) -> R {
        try text.withContiguousUTF8 { bytes in
            Result { () throws(SocketIOProtocolError) -> R in
                var reader = JSONReader(bytes: bytes)
                return try body(&reader)
            }
        }.get()
    }

    public enum Kind: Sendable, Equatable {
        case null, bool, number, string, array, object
    }

    /// The kind of the value at the cursor; nil at the end or at anything else.
    public var nextKind: Kind? {
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        default: return nil
        }
    }

    private func fail(_ message: String) -> SocketIOProtocolError {
        JSONGrammar.error(message, at: index)
    }

    @inline(__always)
    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    @inline(__always)
    private mutating func expect(_ byte: UInt8, _ message: StaticString) throws(SocketIOProtocolError) {
        guard index < bytes.count, bytes[index] == byte else { throw fail("\(message)") }
        index += 1
        skipWhitespace()
    }

    // MARK: Containers

    /// Enters the array at the cursor; then call `nextElement()` before each element.
    public mutating func beginArray() throws(SocketIOProtocolError) {
        try expect(UInt8(ascii: "["), "expected an array")
        atFirstElement = true
    }

    /// Moves to the next element of the current array: true when there is one (read it next),
    /// false when the array ends (its `]` is consumed). Every element must be read or skipped
    /// before the next call.
    public mutating func nextElement() throws(SocketIOProtocolError) -> Bool {
        try next(closing: UInt8(ascii: "]"))
    }

    /// Enters the object at the cursor; then call `nextMember()` before each member's value.
    public mutating func beginObject() throws(SocketIOProtocolError) {
        try expect(UInt8(ascii: "{"), "expected an object")
        atFirstElement = true
    }

    /// The next member's name (its value is next: read or skip it), or nil when the object
    /// ends (its `}` is consumed).
    public mutating func nextMember() throws(SocketIOProtocolError) -> Key? {
        guard try next(closing: UInt8(ascii: "}")) else { return nil }
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
        let key = try stringBytes()
        skipWhitespace()
        try expect(UInt8(ascii: ":"), "expected :")
        return key
    }

    private mutating func next(closing: UInt8) throws(SocketIOProtocolError) -> Bool {
        guard index < bytes.count else { throw fail("unterminated container") }
        if bytes[index] == closing {
            index += 1
            skipWhitespace()
            atFirstElement = false
            return false
        }
        if atFirstElement {
            atFirstElement = false
        } else {
            try expect(UInt8(ascii: ","), "expected , between elements")
        }
        return true
    }

    /// A member name: its bytes as they stand in the text, compared without building a
    /// string when they hold no escape.
    public struct Key: CustomStringConvertible {
        @usableFromInline let raw: UnsafeBufferPointer<UInt8>
        @usableFromInline let escaped: Bool

        /// The name as a string, escapes decoded.
        public var string: String {
            guard escaped else { return String(decoding: raw, as: UTF8.self) }
            return (try? JSONReader.unescape(raw)) ?? ""
        }

        public var description: String { string }

        // Inlinable: handlers compare each name with several, and a call each cost more than
        // the comparison.
        @inlinable
        public static func == (key: Key, name: StaticString) -> Bool {
            guard !key.escaped, name.hasPointerRepresentation else { return key.string == name.description }
            let count = name.utf8CodeUnitCount
            guard key.raw.count == count, let base = key.raw.baseAddress else { return key.raw.count == count }
            return chatlog_equal(base, name.utf8Start, count) != 0
        }
    }

    // MARK: Scalars

    /// The string at the cursor, escapes decoded.
    public mutating func readString() throws(SocketIOProtocolError) -> String {
        let raw = try stringBytes()
        skipWhitespace()
        return raw.escaped ? try Self.unescape(raw.raw) : String(decoding: raw.raw, as: UTF8.self)
    }

    /// The raw bytes of the string at the cursor (between its quotes) and whether they hold
    /// an escape; the cursor moves past the closing quote.
    private mutating func stringBytes() throws(SocketIOProtocolError) -> Key {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a string") }
        index += 1
        let start = index
        var escaped = false
        while true {
            index = ByteScan.firstSpecialIndex(in: bytes, from: index)
            guard index < bytes.count else { throw fail("unterminated string") }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                let raw = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                return Key(raw: raw, escaped: escaped)
            case UInt8(ascii: "\\"):
                escaped = true
                index += 2  // the escape's first byte; \u's digits are plain bytes
            default:
                throw fail("control character in string")
            }
        }
    }

    /// Decodes the escapes of a string's raw bytes.
    static func unescape(_ raw: UnsafeBufferPointer<UInt8>) throws(SocketIOProtocolError) -> String {
        var result: [UInt8] = []
        result.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\") else {
                result.append(byte)
                index += 1
                continue
            }
            guard index + 1 < raw.count else { throw JSONGrammar.error("unterminated escape", at: index) }
            let escape = raw[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): result.append(escape)
            case UInt8(ascii: "b"): result.append(0x08)
            case UInt8(ascii: "f"): result.append(0x0C)
            case UInt8(ascii: "n"): result.append(0x0A)
            case UInt8(ascii: "r"): result.append(0x0D)
            case UInt8(ascii: "t"): result.append(0x09)
            case UInt8(ascii: "u"):
                let code = try JSONGrammar.unicodeEscape(raw, &index)
                guard let scalar = Unicode.Scalar(code) else { throw JSONGrammar.error("invalid \\u escape", at: index) }
                result.append(contentsOf: String(Character(scalar)).utf8)
            default:
                throw JSONGrammar.error("invalid escape", at: index)
            }
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// The number at the cursor.
    public mutating func readNumber() throws(SocketIOProtocolError) -> Double {
        guard nextKind == .number else { throw fail("expected a number") }
        let start = index
        let isInteger = try JSONGrammar.scanNumber(bytes, &index)
        let text = UnsafeBufferPointer(rebasing: bytes[start..<index])
        skipWhitespace()
        if isInteger, text.count <= 16, let value = Self.integer(text) { return Double(value) }
        guard let value = Double(String(decoding: text, as: UTF8.self)) else { throw fail("number out of range") }
        return value
    }

    /// The number at the cursor as an integer, which it must be exactly, and within
    /// JavaScript's exact range (±(2^53 − 1)).
    public mutating func readInteger() throws(SocketIOProtocolError) -> Int64 {
        // The common case without a Double: an optional minus and at most 15 digits (below
        // 2^53, so in range), not starting with 0 unless alone, that nothing continues.
        var position = index
        let negative = position < bytes.count && bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        let digitsStart = position
        var magnitude: Int64 = 0
        while position < bytes.count, position - digitsStart < 16, bytes[position] &- UInt8(ascii: "0") < 10 {
            magnitude = magnitude &* 10 &+ Int64(bytes[position] &- UInt8(ascii: "0"))
            position += 1
        }
        let digits = position - digitsStart
        if digits > 0, digits <= 15, digits == 1 || bytes[digitsStart] != UInt8(ascii: "0"),
           position == bytes.count || !JSONGrammar.continuesNumber(bytes[position]) {
            index = position
            skipWhitespace()
            return negative ? -magnitude : magnitude
        }
        let start = index
        let value = try readNumber()
        guard value == value.rounded(), abs(value) <= 9_007_199_254_740_991 else {
            index = start
            throw fail("expected an integer")
        }
        return Int64(value)
    }

    /// Digits with an optional minus, at most 16 of them: exact in a Double.
    private static func integer(_ text: UnsafeBufferPointer<UInt8>) -> Int64? {
        var value: Int64 = 0
        var negative = false
        for (position, byte) in text.enumerated() {
            if position == 0, byte == UInt8(ascii: "-") {
                negative = true
                continue
            }
            value = value &* 10 &+ Int64(byte &- UInt8(ascii: "0"))
        }
        return negative ? -value : value
    }

    public mutating func readBool() throws(SocketIOProtocolError) -> Bool {
        switch nextKind {
        case .bool where bytes[index] == UInt8(ascii: "t"):
            try JSONGrammar.scanLiteral("true", bytes, &index)
            skipWhitespace()
            return true
        case .bool:
            try JSONGrammar.scanLiteral("false", bytes, &index)
            skipWhitespace()
            return false
        default:
            throw fail("expected true or false")
        }
    }

    /// Consumes a `null` at the cursor and returns true; false (consuming nothing) otherwise.
    public mutating func readNull() throws(SocketIOProtocolError) -> Bool {
        guard nextKind == .null else { return false }
        try JSONGrammar.scanLiteral("null", bytes, &index)
        skipWhitespace()
        return true
    }

    /// Skips the value at the cursor, whatever it is.
    public mutating func skipValue() throws(SocketIOProtocolError) {
        switch nextKind {
        case .string:
            _ = try stringBytes()
            skipWhitespace()
        case .number:
            _ = try readNumber()
        case .bool:
            _ = try readBool()
        case .null:
            _ = try readNull()
        case .array:
            try beginArray()
            while try nextElement() { try skipValue() }
        case .object:
            try beginObject()
            while try nextMember() != nil { try skipValue() }
        case nil:
            throw fail("expected a value")
        }
    }

    /// Enters an EVENT payload's array and passes its first element, the event name.
    @usableFromInline
    mutating func enterEventArguments() throws(SocketIOProtocolError) {
        try beginArray()
        guard try nextElement(), nextKind == .string else {
            throw .invalidSocketPacket("EVENT payload must start with the event name")
        }
        try skipValue()
    }

    /// Whether the whole text has been read.
    public var isAtEnd: Bool { index >= bytes.count }
}
