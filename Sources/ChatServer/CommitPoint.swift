import Journal
import Replication

/// Where the chat server's commit point is: what the tailer may apply and broadcast, the
/// acks may confirm, and History may hold. On its own, a journal commit (written and, with
/// the default durability, fsynced); with synchronous replicas (`--sync-replicas N`), an
/// event must also be durable on N standbys.
///
/// The replicated end is always where a batch starts (a standby's durable end is), so readers
/// that stop there take whole batches.
struct CommitPoint: Sendable {
    let journal: Journal
    /// Set when commits wait for standbys.
    let replication: ReplicationLeader?

    /// Everything below this is committed.
    var end: Offset {
        let local = journal.committedOffset
        guard let replication else { return local }
        return min(local, replication.replicatedOffset)
    }

    /// Waits until `offset` is committed.
    /// - Returns: false when the journal is closed and `offset` will never commit.
    /// - Throws: `JournalError.writerFailed`; `CancellationError`.
    func wait(for offset: Offset) async throws -> Bool {
        guard try await journal.waitForCommit(of: offset) else { return false }
        try await replication?.waitForReplication(of: offset)
        return true
    }

    /// The batches of a read that are committed (whole batches: see above).
    func committed(_ batches: [RecordBatch]) -> ArraySlice<RecordBatch> {
        guard replication != nil else { return batches[...] }
        let end = self.end
        return batches.prefix { $0.header.baseOffset < end }
    }
}
