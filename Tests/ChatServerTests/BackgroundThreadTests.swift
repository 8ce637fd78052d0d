#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import ChatServer

@Suite struct BackgroundThreadTests {
    func niceness() -> Int32 { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }

    @Test func runsItsWorkAtTheLowestPriorityAndLeavesTheCallersAlone() async throws {
        let background = BackgroundThread()
        let before = niceness()
        let inside = try await background.run { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }
        #expect(inside == BackgroundThread.niceness)
        #expect(niceness() == before)
        struct Failure: Error {}
        await #expect(throws: Failure.self) { try await background.run { throw Failure() } }
        await background.shutdown()
        await #expect(throws: (any Error).self) { try await background.run { 1 } }
    }
}
