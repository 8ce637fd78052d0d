import Foundation
import Journal
import Logging
import NIOCore
import Synchronization
import Testing

@testable import ChatServer
@testable import Replication

/// Cluster mode's commit rule (docs/CLUSTER.md, rule 3) as the leader applies it: an event
/// commits once every other member of the in-sync set has it durable, and there are at least
/// `--sync-replicas` of them; admitting and dismissing members move the commit point safely;
/// nothing commits while the lease may have expired.
@Suite struct InSyncCommitTests {
    final class Gate: Sendable {
        let open = Mutex(true)
    }

    func withLeader(syncReplicas: Int, inSync: Set<String>, gate: Gate = Gate(),
                    _ body: (ReplicationLeader, CommitPoint, Journal) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatlog-insync-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let journal = try Journal.open(directory: directory, logger: logger)
        let leader = ReplicationLeader(journal: journal, secret: nil, role: .leading, syncReplicas: syncReplicas,
                                       mayAcknowledge: { gate.open.withLock { $0 } }, logger: logger)
        leader.useInSyncSet(inSync)
        try await body(leader, CommitPoint(journal: journal, replication: leader), journal)
        await journal.close()
    }

    /// Appends `count` events and waits until the journal has them durable.
    func append(_ count: Int, to journal: Journal) async throws {
        for n in 0..<count { _ = try await journal.append(ByteBuffer(string: "event \(n)")) }
        _ = try await journal.waitForCommit(of: Offset(journal.nextOffset.value - 1))
    }

    /// A fetch from `name` claiming `durable`, answered at once.
    func fetch(_ leader: ReplicationLeader, _ name: String, durable: UInt64) {
        leader.began(name, durable: Offset(durable))
        leader.ended(name)
    }

    @Test func anEventCommitsOnlyOnceEveryOtherMemberHasIt() async throws {
        try await withLeader(syncReplicas: 1, inSync: ["b", "c"]) { leader, commit, journal in
            try await append(3, to: journal)
            #expect(commit.end == Offset(0))
            fetch(leader, "b", durable: 3)
            #expect(commit.end == Offset(0), "c has nothing yet")
            fetch(leader, "c", durable: 2)
            #expect(commit.end == Offset(2))
            // A standby outside the set counts for nothing.
            fetch(leader, "d", durable: 3)
            #expect(commit.end == Offset(2))
            fetch(leader, "c", durable: 3)
            #expect(commit.end == Offset(3))
        }
    }

    @Test func aSetSmallerThanSyncReplicasCommitsNothing() async throws {
        try await withLeader(syncReplicas: 2, inSync: ["b"]) { leader, commit, journal in
            try await append(2, to: journal)
            fetch(leader, "b", durable: 2)
            fetch(leader, "c", durable: 2)
            #expect(commit.end == Offset(0))
        }
    }

    @Test func aLeaderAloneWithNoSyncReplicasCommitsOnItsOwnFsync() async throws {
        try await withLeader(syncReplicas: 0, inSync: []) { _, commit, journal in
            try await append(2, to: journal)
            #expect(commit.end == Offset(2))
            #expect(try await commit.wait(for: Offset(1)))
        }
    }

    @Test func anAdmittedStandbyHoldsBackCommitsAndMustHoldWhatWasCommittedBefore() async throws {
        try await withLeader(syncReplicas: 0, inSync: []) { leader, commit, journal in
            try await append(2, to: journal)
            #expect(leader.admit("b") == Offset(2), "what committed alone is what b must hold before etcd lists it")
            try await append(1, to: journal)
            #expect(commit.end == Offset(2), "the event after the admission waits for b")
            fetch(leader, "b", durable: 3)
            #expect(commit.end == Offset(3))
        }
    }

    @Test func dismissingAMemberReleasesTheCommitsItHeldBack() async throws {
        try await withLeader(syncReplicas: 0, inSync: ["b"]) { leader, commit, journal in
            try await append(1, to: journal)
            let waiting = Task { try await commit.wait(for: Offset(0)) }
            try await Task.sleep(for: .milliseconds(50))
            #expect(commit.end == Offset(0))
            leader.dismiss("b")
            #expect(try await waiting.value)
            #expect(commit.end == Offset(1))
        }
    }

    @Test func nothingCommitsWhileTheLeaseMayHaveExpired() async throws {
        let gate = Gate()
        gate.open.withLock { $0 = false }
        try await withLeader(syncReplicas: 0, inSync: [], gate: gate) { _, commit, journal in
            try await append(1, to: journal)
            let ended = Mutex(false)
            let waiting = Task {
                defer { ended.withLock { $0 = true } }
                return try await commit.wait(for: Offset(0))
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(!ended.withLock { $0 }, "an event was acknowledged while the lease was not certainly held")
            gate.open.withLock { $0 = true }
            #expect(try await waiting.value)
        }
    }
}
