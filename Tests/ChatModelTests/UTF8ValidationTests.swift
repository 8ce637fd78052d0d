import NIOCore
import Testing
@testable import ChatModel

@Suite struct UTF8ValidationTests {
    /// The word-at-a-time check against the byte-by-byte rule: every byte value, at every
    /// position of names up to three words long.
    @Test func printableASCIIIsCheckedAtEveryPositionForEveryByte() {
        var wrong: [String] = []
        for length in 1...24 {
            for position in 0..<length {
                for byte in UInt8.min...UInt8.max {
                    var bytes = [UInt8](repeating: UInt8(ascii: "k"), count: length)
                    bytes[position] = byte
                    let expected = byte >= 0x20 && byte < 0x7F
                    if bytes.withUnsafeBufferPointer({ UTF8Validation.isPrintableASCII($0) }) != expected {
                        wrong.append("byte \(byte) at \(position) of \(length)")
                    }
                }
            }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
        #expect([UInt8]().withUnsafeBufferPointer { UTF8Validation.isPrintableASCII($0) })
    }

    /// Texts and names may not hold control characters (category Cc; a message may hold newline
    /// and tab): against the rule read from each scalar's properties, for every ASCII byte at
    /// every position of texts up to three words long, and for texts beyond ASCII.
    @Test func controlCharactersAreFoundAtEveryPosition() {
        func byProperties(_ text: String, _ allowNewlines: Bool) -> Bool {
            text.unicodeScalars.contains { $0.properties.generalCategory == .control && !(allowNewlines && ($0 == "\n" || $0 == "\t")) }
        }
        var wrong: [String] = []
        for length in 1...24 {
            for position in 0..<length {
                for byte in UInt8(0)...UInt8(0x7F) {
                    var bytes = [UInt8](repeating: UInt8(ascii: "k"), count: length)
                    bytes[position] = byte
                    let text = String(decoding: bytes, as: UTF8.self)
                    for allowNewlines in [false, true] where containsControlCharacters(text, allowNewlines: allowNewlines) != byProperties(text, allowNewlines) {
                        wrong.append("byte \(byte) at \(position) of \(length), newlines \(allowNewlines)")
                    }
                }
            }
        }
        for text in ["zoë says hi", "zoë\u{85}", "\u{7}zoë", "zoë\u{7}", "日本語のテキスト\n", "emoji 🎉 and\ttab", "\u{9F}"] {
            for allowNewlines in [false, true] where containsControlCharacters(text, allowNewlines: allowNewlines) != byProperties(text, allowNewlines) {
                wrong.append("\(text.debugDescription), newlines \(allowNewlines)")
            }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
    }

    static func agrees(_ bytes: [UInt8]) -> Bool {
        let expected = String(validating: bytes, as: UTF8.self) != nil
        return bytes.withUnsafeBufferPointer { UTF8Validation.isValid($0) } == expected
    }

    @Test func edgeCasesOfTable3_7() {
        let cases: [[UInt8]] = [
            [], Array("plain ascii, longer than one word".utf8), Array("é€😀".utf8),
            [0xC0, 0x80], [0xC1, 0xBF], [0xC2, 0x80], [0xDF, 0xBF],                 // overlong 2-byte, smallest and largest valid
            [0xE0, 0x9F, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80],  // overlong 3-byte, surrogates
            [0xEF, 0xBF, 0xBF], [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80],
            [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80],    // above U+10FFFF
            [0x80], [0xBF], [0xC3], [0xE2, 0x82], [0xF0, 0x9F, 0x98], [0xFF], [0xFE],        // lone, truncated, never valid
            Array("abcdefgh".utf8) + [0xC3] + Array("abcdefgh".utf8), [0xC3, 0x41], [0xE2, 0x82, 0x41],
        ]
        for bytes in cases { #expect(Self.agrees(bytes), "\(bytes)") }
    }

    @Test func agreesWithTheStandardLibraryOnRandomBytes() {
        var generator = SystemRandomNumberGenerator()
        // Mostly ASCII and UTF-8-ish bytes, so that both valid and invalid input are common.
        let alphabet: [UInt8] = Array(0x20...0x7E) + [0x00, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF,
                                                       0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF]
        var valid = 0
        for _ in 0..<50_000 {
            let count = Int.random(in: 0..<24, using: &generator)
            let bytes = (0..<count).map { _ in
                Bool.random(using: &generator) ? UInt8.random(in: 0x80...0xF4, using: &generator)
                    : alphabet.randomElement(using: &generator) ?? 0
            }
            if String(validating: bytes, as: UTF8.self) != nil { valid += 1 }
            #expect(Self.agrees(bytes), "\(bytes)")
        }
        #expect(valid > 1_000, "the generator produced too few valid strings to test acceptance")
    }
}
