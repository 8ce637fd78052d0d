import Testing

@testable import HummingbirdSocketIO

@Suite struct RandomIDTests {
    /// Session, socket and pid ids: 20 characters of the URL-safe base-64 alphabet, each
    /// position drawn on its own: over many ids every position takes every character, and no
    /// two ids are alike.
    @Test func idsUseTheWholeAlphabetInEveryPosition() {
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var seen = Array(repeating: Set<UInt8>(), count: 20)
        var ids: Set<String> = []
        for _ in 0..<4_000 {
            let id = Array(SocketIOServer.randomID().utf8)
            #expect(id.count == 20)
            for (position, character) in id.enumerated() where position < 20 {
                #expect(alphabet.contains(character))
                seen[position].insert(character)
            }
            ids.insert(String(decoding: id, as: UTF8.self))
        }
        #expect(ids.count == 4_000)
        // 4,000 draws leave a character out of a position with probability about 64 * e^-62.
        #expect(seen.allSatisfy { $0 == alphabet })
    }
}
