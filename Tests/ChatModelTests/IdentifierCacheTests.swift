import NIOCore
import Testing
@testable import ChatModel

@Suite struct IdentifierCacheTests {
    @Test func findsEveryNameItHoldsByItsExactBytes() {
        var cache = IdentifierCache()
        var generator = SystemRandomNumberGenerator()
        // Lengths around the eight-byte steps of the hash, and names sharing long prefixes.
        var names: Set<[UInt8]> = []
        while names.count < 5_000 {
            let length = Int.random(in: 1...64, using: &generator)
            let prefix = Array("room-shared-prefix-".utf8).prefix(Int.random(in: 0...19, using: &generator))
            names.insert(Array(prefix) + (0..<length).map { _ in UInt8.random(in: 0x21...0x7E, using: &generator) })
        }
        let ordered = Array(names)
        for (value, name) in ordered.enumerated() {
            name.withUnsafeBufferPointer { bytes in
                #expect(cache.value(for: bytes) == nil)
                cache.insert(bytes, value: UInt32(value))
            }
        }
        for (value, name) in ordered.enumerated() {
            name.withUnsafeBufferPointer { #expect(cache.value(for: $0) == UInt32(value)) }
        }
        for absent in [Array("never-inserted".utf8), Array(ordered[0].dropLast()) + [0x20]] where !names.contains(absent) {
            absent.withUnsafeBufferPointer { #expect(cache.value(for: $0) == nil) }
        }
    }

    /// Names held in their slot (up to sixteen bytes) and in the arena (longer): names that are
    /// prefixes of one another, or differ only in their last byte, on either side of the line.
    @Test func tellsApartNamesThatDifferOnlyAtTheEdges() {
        var cache = IdentifierCache()
        let base = Array("abcdefghijklmnopqrstuvwxyz".utf8)
        var names: [[UInt8]] = []
        for length in [1, 7, 8, 9, 15, 16, 17, 23, 24, 25] {
            names.append(Array(base.prefix(length)))
            names.append(Array(base.prefix(length - 1)) + [UInt8(ascii: "!")])
        }
        for (value, name) in names.enumerated() {
            name.withUnsafeBufferPointer { cache.insert($0, value: UInt32(value)) }
        }
        for (value, name) in names.enumerated() {
            name.withUnsafeBufferPointer { #expect(cache.value(for: $0) == UInt32(value), "\(name.count) bytes") }
        }
        for length in [2, 10, 18, 26] {
            Array(base.prefix(length)).withUnsafeBufferPointer { #expect(cache.value(for: $0) == nil) }
        }
    }
}
