import Foundation
import Journal
import Logging
import NIOCore
import Replication
import Synchronization
import Testing

@testable import ChatServer

/// The commit point with synchronous replicas: what a fenced or stopping leader's readers of it
/// (the tailer, History) see.
@Suite struct CommitPointTests {
    func withLeader(_ body: (ReplicationLeader, CommitPoint, Journal) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatlog-commit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let journal = try Journal.open(directory: directory, logger: logger)
        let leader = ReplicationLeader(journal: journal, secret: nil, role: .leading, syncReplicas: 1, logger: logger)
        try await body(leader, CommitPoint(journal: journal, replication: leader), journal)
        await journal.close()
    }

    final class Flag: Sendable {
        let value = Mutex(false)
        var isSet: Bool { value.withLock { $0 } }
    }

    /// Waits for `offset` in a task, and reports whether that wait has ended.
    func waiting(for offset: Offset, on commit: CommitPoint) -> (Task<Bool, Error>, Flag) {
        let ended = Flag()
        let task = Task {
            defer { ended.value.withLock { $0 = true } }
            return try await commit.wait(for: offset)
        }
        return (task, ended)
    }

    /// A fenced leader's tailer once ended with an error and the server stopped with it
    /// ("Service failed(ChatServer.Tailer)"). The wait goes on, and the commit point stays
    /// where the standbys left it, so nothing unreplicated becomes visible.
    @Test func aFencedLeadersReadersWaitOnAndSeeNothingUnreplicated() async throws {
        try await withLeader { leader, commit, journal in
            _ = try await journal.append(ByteBuffer(string: "unreplicated"))
            let (task, ended) = waiting(for: Offset(0), on: commit)
            try await Task.sleep(for: .milliseconds(50))
            #expect(leader.fence(newerEpoch: 1, reason: "test"))
            try await Task.sleep(for: .milliseconds(50))
            #expect(!ended.isSet, "the wait ended when the leader was fenced")
            #expect(commit.end == Offset(0), "the event no standby has counts as committed")
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
        }
    }

    /// A stopping server's drain stops replication first; its readers must go on until they are
    /// stopped in their turn (they ended at once, and the stop failed with exit 1).
    @Test func aStoppedLeadersReadersWaitOnUntilCancelled() async throws {
        try await withLeader { leader, commit, journal in
            _ = try await journal.append(ByteBuffer(string: "unreplicated"))
            let (task, ended) = waiting(for: Offset(0), on: commit)
            try await Task.sleep(for: .milliseconds(50))
            leader.stop()
            try await Task.sleep(for: .milliseconds(50))
            #expect(!ended.isSet, "the wait ended when replication stopped")
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
        }
    }
}
