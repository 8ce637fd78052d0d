/// Checking bytes for well-formed UTF-8 without building a string: the event codec reads
/// message text straight from record bytes (`ChatEventCodec.withMessageSent`), and decoding
/// it into a `String` only to check it would cost an allocation and a copy per message.
enum UTF8Validation {
    /// Whether every byte is printable ASCII (0x20...0x7E), eight bytes at a time: replay
    /// checks every message's room and author with it.
    static func isPrintableASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var index = 0
        while index + 8 <= bytes.count {
            let word = UInt64(littleEndian: UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self))
            // Per byte, no carries between bytes: the high bit is set for bytes >= 0x80; the
            // low seven bits plus 1 reach 0x80 only for 0x7F; plus 0x60, only from 0x20 up.
            let low = word & ~highs
            let outside = (word | (low &+ ones) | ~(low &+ ones &* 0x60)) & highs
            if outside != 0 { return false }
            index += 8
        }
        while index < bytes.count {
            guard bytes[index] >= 0x20, bytes[index] < 0x7F else { return false }
            index += 1
        }
        return true
    }

    /// Whether `bytes` are well-formed UTF-8 (Unicode's table 3-7: no overlong forms, no
    /// surrogates, nothing above U+10FFFF), exactly what `String(validating:as:)` accepts.
    /// ASCII runs are passed eight bytes at a time.
    static func isValid(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let count = bytes.count
        var index = 0
        while index < count {
            // Skip ASCII a word at a time.
            while index + 8 <= count,
                  UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                index += 8
            }
            guard index < count else { return true }
            let lead = base[index]
            if lead < 0x80 {
                index += 1
                continue
            }
            // The allowed range of the second byte depends on the lead byte; the others are
            // always 0x80...0xBF.
            let length: Int
            var secondLow: UInt8 = 0x80
            var secondHigh: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; secondLow = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; secondHigh = 0x9F
            case 0xF0: length = 4; secondLow = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; secondHigh = 0x8F
            default: return false  // 0x80...0xC1 and 0xF5...0xFF never lead
            }
            guard index + length <= count else { return false }
            let second = base[index + 1]
            guard second >= secondLow, second <= secondHigh else { return false }
            for continuation in 2..<length where base[index + continuation] & 0xC0 != 0x80 { return false }
            index += length
        }
        return true
    }
}
