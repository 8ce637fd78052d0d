import CByteScan
import Testing

@testable import SocketIO

/// The copying helpers the JSON writer uses (`Sources/CByteScan`): each copies exactly its
/// bytes, writes nothing past them, and the checking copy tells strings that need an escape
/// from those that do not, whatever the length and wherever the special byte is.
@Suite struct ByteScanTests {
    static let specials: [UInt8] = [0x22, 0x5C, 0x00, 0x1F, 0x0A]
    static let plain: [UInt8] = [0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x80, 0xC3, 0xFF, UInt8(ascii: "a")]
    static let guardByte: UInt8 = 0xAA

    /// Random bytes of every length up to 80, some with one or two special bytes.
    static func samples() -> [[UInt8]] {
        var generator = SystemRandomNumberGenerator()
        var samples: [[UInt8]] = []
        for length in 0...80 {
            for _ in 0..<20 {
                var bytes = (0..<length).map { _ in plain.randomElement(using: &generator) ?? 0x20 }
                for _ in 0..<Int.random(in: 0...2, using: &generator) where length > 0 {
                    bytes[Int.random(in: 0..<length, using: &generator)] = specials.randomElement(using: &generator) ?? 0
                }
                samples.append(bytes)
            }
        }
        return samples
    }

    /// Runs `copy` from `source` into a buffer with guard bytes after the copy's room;
    /// returns what the buffer holds afterwards and `copy`'s result.
    static func copied<R>(_ source: [UInt8], _ copy: (UnsafeMutablePointer<UInt8>, UnsafePointer<UInt8>, Int) -> R) -> ([UInt8], R) {
        var target = [UInt8](repeating: guardByte, count: source.count + 32)
        let result = source.withUnsafeBufferPointer { from in
            target.withUnsafeMutableBufferPointer { to in
                copy(to.baseAddress!, from.baseAddress ?? UnsafePointer(bitPattern: 1)!, from.count)
            }
        }
        return (target, result)
    }

    @Test func copyCopiesExactlyItsBytes() {
        var failures: [String] = []
        for source in Self.samples() {
            let (target, _) = Self.copied(source) { chatlog_copy($0, $1, $2) }
            if Array(target[..<source.count]) != source || target[source.count...].contains(where: { $0 != Self.guardByte }) {
                failures.append("\(source)")
            }
        }
        let failed = failures.count  // not the whole list in the report
        #expect(failed == 0, "\(failures.prefix(3))")
    }

    @Test func copyPlainCopiesAndTellsWhetherAnEscapeIsNeeded() {
        var failures: [String] = []
        for source in Self.samples() {
            let expected = !source.contains { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 }
            let (target, plain) = Self.copied(source) { chatlog_json_copy_plain($0, $1, $2) != 0 }
            if plain != expected { failures.append("plain \(plain): \(source)") }
            if plain && Array(target[..<source.count]) != source { failures.append("copy: \(source)") }
            if target[source.count...].contains(where: { $0 != Self.guardByte }) { failures.append("past the end: \(source)") }
        }
        let failed = failures.count  // not the whole list in the report
        #expect(failed == 0, "\(failures.prefix(3))")
    }

    /// Strings written into JSON (the fast copy or the escaping loop) read back as themselves.
    @Test func writtenStringsReadBackAsThemselves() throws {
        var failures: [String] = []
        for bytes in Self.samples() {
            let string = String(decoding: bytes, as: UTF8.self)
            let text = JSONValue.string(string).serialized()
            if try JSONParser.parse(text) != .string(string) { failures.append(text) }
            // Only the bytes JSON requires are escaped; the rest is as it was.
            let escapes = bytes.filter { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 }.count
            if escapes == 0 && text != "\"\(string)\"" { failures.append(text) }
        }
        let failed = failures.count  // not the whole list in the report
        #expect(failed == 0, "\(failures.prefix(3))")
    }
}
