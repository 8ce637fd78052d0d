import Testing

@testable import HummingbirdSocketIO

@Suite struct SessionIDTests {
    /// Ids that are equal hash alike; ids that differ past their first eight bytes are still
    /// different keys (they only share a bucket); short ids work as keys too.
    @Test func sessionsAreFoundByTheirWholeID() {
        let ids = ["AAAAAAAAxxxxxxxxxxx1", "AAAAAAAAxxxxxxxxxxx2", "short", "", SocketIOServer.randomID(), SocketIOServer.randomID()]
        var table: [SessionID: Int] = [:]
        for (index, id) in ids.enumerated() { table[SessionID(id)] = index }
        #expect(table.count == ids.count)
        for (index, id) in ids.enumerated() {
            // A copy of the id made apart from the inserted one.
            let copy = String(decoding: Array(id.utf8), as: UTF8.self)
            #expect(table[SessionID(copy)] == index)
            #expect(SessionID(copy).hashValue == SessionID(id).hashValue)
        }
        #expect(table[SessionID("AAAAAAAAxxxxxxxxxxx3")] == nil)
    }

    /// The hashed prefix is the first eight bytes, little-endian, whether read as a word or a
    /// byte at a time (a string shorter than eight bytes).
    @Test func thePrefixIsTheFirstEightBytes() {
        #expect(SessionID.prefix("ABCDEFGHIJ") == 0x4847_4645_4443_4241)
        #expect(SessionID.prefix("AB") == 0x4241)
        #expect(SessionID.prefix("") == 0)
        #expect(SessionID.prefix("ABCDEFGH") == SessionID.prefix("ABCDEFGHxyz"))
    }
}
