import Testing
@testable import ChatModel

@Suite struct ClientMessageIDsTests {
    /// A made-up id is the prefix and 20 characters of the URL-safe base-64 alphabet, each
    /// position drawn on its own: over many ids every position takes every character, and no
    /// two ids are alike.
    @Test func madeUpIdsUseTheWholeAlphabetInEveryPosition() {
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var seen = Array(repeating: Set<UInt8>(), count: 20)
        var ids: Set<String> = []
        for _ in 0..<4_000 {
            let id = ClientMessageIDs.generate()
            #expect(id.hasPrefix(ClientMessageIDs.generatedPrefix))
            #expect(!ClientMessageIDs.mayBeSentByClients(id))
            let drawn = Array(id.utf8.dropFirst(ClientMessageIDs.generatedPrefix.utf8.count))
            #expect(drawn.count == 20)
            for (position, character) in drawn.enumerated() where position < 20 {
                #expect(alphabet.contains(character))
                seen[position].insert(character)
            }
            ids.insert(id)
        }
        #expect(ids.count == 4_000)
        // 4,000 draws leave a character out of a position with probability about 64 * e^-62.
        #expect(seen.allSatisfy { $0 == alphabet })
    }
}
