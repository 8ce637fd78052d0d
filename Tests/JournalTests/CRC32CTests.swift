import CCRC32C
import Testing

@testable import Journal

@Suite struct CRC32CTests {
    let check = Array("123456789".utf8)

    @Test func portableMatchesPublishedCheckValue() {
        #expect(check.withUnsafeBytes { chatlog_crc32c_portable(0, $0.baseAddress, $0.count) } == 0xE306_9283)
    }

    @Test func hardwareMatchesPublishedCheckValue() throws {
        try #require(CRC32C.usesHardware, "this CPU has no CRC-32C instructions")
        #expect(check.withUnsafeBytes { chatlog_crc32c_hardware(0, $0.baseAddress, $0.count) } == 0xE306_9283)
    }

    @Test func dispatcherMatchesPublishedCheckValue() {
        #expect(CRC32C.checksum(check) == 0xE306_9283)
    }

    /// RFC 3720 (iSCSI) B.4 test vectors.
    @Test func matchesISCSIVectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
    }

    @Test func hardwareAndPortableAgreeOnEveryLengthAndAlignment() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<1100).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { raw in
            for start in 0..<9 {
                for length in stride(from: 0, to: 1090, by: 7) {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)])
                    let portable = chatlog_crc32c_portable(0, slice.baseAddress, slice.count)
                    #expect(chatlog_crc32c_hardware(0, slice.baseAddress, slice.count) == portable)
                }
            }
        }
    }

    @Test func continuingEqualsOneShot() {
        let bytes = Array("the quick brown fox jumps over the lazy dog".utf8)
        let whole = CRC32C.checksum(bytes)
        for split in 0...bytes.count {
            let first = CRC32C.checksum(Array(bytes[..<split]))
            #expect(CRC32C.checksum(Array(bytes[split...]), continuing: first) == whole)
        }
    }
}
