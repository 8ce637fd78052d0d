import ChatModel
import GRDBSQLite
import Journal
import Testing
@testable import Projections

@Suite struct ProjectionDatabaseTests {
    /// SQLite keeps no memory statistics in a process that opens projections (every test here
    /// opens one before any other SQLite connection), so its allocations take no process-wide
    /// mutex: with statistics on, SQLite counts the bytes it holds, and the count is not 0.
    @Test func sqliteKeepsNoMemoryStatistics() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 11)
        try await workload.append(200, to: journal)
        let history = try HistoryProjection(path: directory.path + "/history.sqlite")
        try history.apply(try journal.read(from: .zero))
        #expect(try history.nextOffset() == journal.committedOffset)
        #expect(ProjectionDatabase.sqliteTuned == SQLITE_OK)
        #expect(sqlite3_memory_used() == 0)
        await journal.close()
    }
}
