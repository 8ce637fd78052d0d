import CByteScan

/// Finding the bytes that matter in JSON strings, for the validator, the reader and the
/// serializer: sixteen at a time (SSE2, `CByteScan`) for text known to be UTF-8, eight at a
/// time (SWAR: one 64-bit word holds eight bytes) where non-ASCII bytes must be noticed.
enum ByteScan {
    private static let highs: UInt64 = 0x8080_8080_8080_8080

    /// The index of the first byte at or after `start` that is `"`, `\` or a control
    /// character (< 0x20), or `bytes.count` when there is none; and whether a byte ≥ 0x80
    /// was passed on the way.
    @inline(__always)
    static func firstSpecial(in bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> (index: Int, sawNonASCII: Bool) {
        var index = start
        var nonASCII: UInt64 = 0
        if let base = bytes.baseAddress {
            let raw = UnsafeRawPointer(base)
            while index + 8 <= bytes.count {
                let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                let special = chatlog_json_specials64(word)
                if special != 0 {
                    let found = index + special.trailingZeroBitCount / 8
                    // Only the bytes before the special one count for the non-ASCII flag.
                    let before = found - index
                    let mask: UInt64 = before == 0 ? 0 : (before == 8 ? ~0 : (1 << (UInt64(before) * 8)) &- 1)
                    nonASCII |= word & highs & mask
                    return (found, nonASCII != 0)
                }
                nonASCII |= word & highs
                index += 8
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            if byte >= 0x80 { nonASCII = 1 }
            index += 1
        }
        return (index, nonASCII != 0)
    }

    /// `firstSpecial` without the non-ASCII flag, for bytes known to be valid UTF-8: sixteen
    /// bytes at a time (`chatlog_json_first_special`, SSE2).
    @inline(__always)
    static func firstSpecialIndex(in bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        guard let base = bytes.baseAddress, start < bytes.count else { return bytes.count }
        return chatlog_json_first_special(base, start, bytes.count)
    }
}
