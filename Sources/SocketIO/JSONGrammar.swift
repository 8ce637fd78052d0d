/// The pieces of the JSON grammar that the parser and the validator share, so that both
/// accept exactly the same numbers and escapes.
enum JSONGrammar {
    static func error(_ message: String, at index: Int) -> SocketIOProtocolError {
        .invalidJSON("\(message) at byte \(index)")
    }

    /// Skips `null`, `true` or `false` at `index`.
    static func scanLiteral(_ literal: StaticString, _ bytes: UnsafeBufferPointer<UInt8>, _ index: inout Int) throws(SocketIOProtocolError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("invalid literal", at: index) }
        for offset in 0..<count where bytes[index + offset] != literal.utf8Start[offset] {
            throw error("invalid literal", at: index)
        }
        index += count
    }

    /// Skips a number (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`) starting at
    /// `index`; returns whether it holds only an optional minus and digits.
    static func scanNumber(_ bytes: UnsafeBufferPointer<UInt8>, _ index: inout Int) throws(SocketIOProtocolError) -> Bool {
        func digits(_ index: inout Int) -> Int {
            let from = index
            while index < bytes.count, bytes[index] &- UInt8(ascii: "0") < 10 { index += 1 }
            return index - from
        }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { throw error("unterminated number", at: index) }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits(&index) == 0 {
            throw error("expected a digit", at: index)
        }
        var integer = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            integer = false
            guard digits(&index) > 0 else { throw error("expected a digit after .", at: index) }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            integer = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits(&index) > 0 else { throw error("expected a digit in the exponent", at: index) }
        }
        return integer
    }

    /// Whether `byte` would continue a number: a digit, a fraction or an exponent.
    @inline(__always)
    static func continuesNumber(_ byte: UInt8) -> Bool {
        byte &- UInt8(ascii: "0") < 10 || byte == UInt8(ascii: ".") || byte | 0x20 == UInt8(ascii: "e")
    }

    /// Reads the code point of a `\u` escape whose four hex digits start at `index`,
    /// including the second half of a surrogate pair; lone surrogates are errors.
    static func unicodeEscape(_ bytes: UnsafeBufferPointer<UInt8>, _ index: inout Int) throws(SocketIOProtocolError) -> UInt32 {
        let code = try hex4(bytes, &index)
        if (0xDC00...0xDFFF).contains(code) { throw error("lone low surrogate", at: index) }
        guard (0xD800...0xDBFF).contains(code) else { return code }
        guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
            throw error("lone high surrogate", at: index)
        }
        index += 2
        let low = try hex4(bytes, &index)
        guard (0xDC00...0xDFFF).contains(low) else { throw error("invalid low surrogate", at: index) }
        return 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
    }

    private static func hex4(_ bytes: UnsafeBufferPointer<UInt8>, _ index: inout Int) throws(SocketIOProtocolError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("short \\u escape", at: index) }
        var value: UInt32 = 0
        for offset in 0..<4 {
            let byte = bytes[index + offset]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape", at: index)
            }
            value = value << 4 | digit
        }
        index += 4
        return value
    }
}
