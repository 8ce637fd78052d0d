import ChatModel
import Foundation
import GRDB
import Journal
import Logging
import NIOCore
import Testing
@testable import Projections

@Suite struct ProjectionRunnerTests {
    @Test func rebuildFromZeroEqualsIncrementalProjection() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        let paths = ProjectionPaths(journalDirectory: directory.journal)
        let incremental = try ProjectionRunner(journal: journal, paths: paths, logger: .quiet)
        incremental.readBytesMax = 2048  // many small History transactions
        var workload = Workload(seed: 11)
        for _ in 0..<20 {
            try await workload.append(250, to: journal)
            try incremental.catchUp()
        }
        #expect(incremental.roomState?.state == workload.state)

        let rebuiltPaths = ProjectionPaths(journalDirectory: directory.path + "/rebuilt")
        try FileManager.default.createDirectory(atPath: directory.path + "/rebuilt", withIntermediateDirectories: true)
        let rebuilt = try ProjectionRunner(journal: journal, paths: rebuiltPaths, logger: .quiet)
        try rebuilt.catchUp()
        #expect(rebuilt.roomState?.state == incremental.roomState?.state)
        let messages = try #require(try incremental.history?.allMessages())
        #expect(messages.count > 1000)
        #expect(messages.contains { $0.text == nil } && messages.contains { $0.editedMs != nil })
        #expect(try rebuilt.history?.allMessages() == messages)
        for room in workload.rooms {
            #expect(try rebuilt.history?.page(room: room.value, limit: 200) == incremental.history?.page(room: room.value, limit: 200))
        }
        await journal.close()
    }

    @Test func aMalformedEventStopsReplayNamingItsOffset() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 1)
        try await workload.append(10, to: journal)
        _ = try await journal.append(ByteBuffer(bytes: [1, 7, 0]))  // a message_sent cut short
        _ = try await journal.append(ByteBuffer(bytes: [9, 1, 2, 3]))  // a future version: skipped
        let runner = try ProjectionRunner(journal: journal, paths: ProjectionPaths(journalDirectory: directory.journal), logger: .quiet)
        #expect {
            try runner.catchUp()
        } throws: { error in
            guard case ProjectionError.malformedEvent(let offset, _) = error else { return false }
            return offset == Offset(10)
        }
        await journal.close()
    }
}
