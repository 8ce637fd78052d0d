import Foundation
import Journal
import Logging
import Projections
import Replication

extension ChatServer {
    /// A standby (a former leader, or a standby ahead of a newly promoted one) may hold records
    /// its leader never had. Before it serves, it asks its leader where its last epoch ended
    /// there and cuts its journal back to that point (the cut bytes kept as `.broken` copies),
    /// and drops its projections, which may hold the cut events: they are rebuilt from the
    /// journal. A leader that cannot be asked now is asked by every fetch later (`diverged`).
    static func cutDivergentTail(_ configuration: ChatServerConfiguration, leaderURL: String, secret: ReplicationSecret,
                                         journalConfiguration: JournalConfiguration, logger: Logger) async throws {
        let follower = ReplicationFollower.Configuration(leaderURL: leaderURL, secret: secret, name: configuration.standbyName)
        var cut = false
        // Each cut goes back at least one batch; a journal that agrees with its leader nowhere
        // ends empty.
        while true {
            let journal = try Journal.open(directory: configuration.journalDirectory, configuration: journalConfiguration, logger: logger)
            let end = journal.committedOffset
            let empty = end == .zero && journal.earliestOffset == .zero
            let last: BatchHeader?
            let agreement: ReplicationFollower.Agreement
            do {
                last = try journal.lastBatchHeader()
                agreement = await ReplicationFollower.agreement(configuration: follower, end: end, last: last, logger: logger)
                if case .agrees(let epoch) = agreement { try journal.noteSeenEpoch(epoch) }
            } catch {
                await journal.close()
                throw error
            }
            await journal.close()
            if try await Seeding.seedIfNeeded(configuration, follower: follower, agreement: agreement, journalIsEmpty: empty, logger: logger) {
                return
            }
            guard case .diverged(let cutTo) = agreement, cutTo < end else { break }
            if let tail = try Journal.truncate(directory: configuration.journalDirectory, to: cutTo, roundingDown: true, logger: logger) {
                logger.warning("journal cut back to where it agrees with its leader", metadata: [
                    "journal.cut_from": "\(tail.from)", "journal.cut_to": "\(tail.to)", "replication.leader": "\(leaderURL)",
                ])
            }
            cut = true
        }
        guard cut else { return }
        let paths = ProjectionPaths(journalDirectory: configuration.journalDirectory)
        for path in [paths.roomStateSnapshot, paths.history, paths.history + "-wal", paths.history + "-shm"]
        where FileManager.default.fileExists(atPath: path) {
            try FileManager.default.removeItem(atPath: path)
        }
        logger.warning("projections dropped after the cut; rebuilding them from the journal")
    }
}
