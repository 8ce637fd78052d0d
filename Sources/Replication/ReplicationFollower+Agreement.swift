import AsyncHTTPClient
import Journal
import Logging

/// Before a standby serves, it asks its leader whether its journal holds records the leader
/// never had (`ChatServer.cutDivergentTail` cuts them).
extension ReplicationFollower {
    /// What the leader said of a journal's end, asked before a standby serves.
    public enum Agreement: Sendable, Equatable {
        /// It agrees (the leader's epoch, from the answer's header).
        case agrees(leaderEpoch: UInt32)
        /// The journal holds records the leader never had from this offset on.
        case diverged(cutTo: Offset)
        /// The leader no longer retains the journal's end (`out_of_range`).
        case outOfRange
        /// The leader could not be asked, or answered something else.
        case unknown
    }

    /// Asks the leader whether this journal (ending at `end` with the batch `last`) has records
    /// the leader never had.
    public static func agreement(configuration: Configuration, end: Offset, last: BatchHeader?, logger: Logger) async -> Agreement {
        await withClient(trustRootsFile: configuration.secret.trustRootsFile) { client in await agreement(configuration: configuration, end: end, last: last, logger: logger, client: client) }
    }

    /// Runs `body` with an HTTP client of its own, shut down afterwards.
    static func withClient<T: Sendable>(trustRootsFile: String?, _ body: (HTTPClient) async -> T) async -> T {
        let client = ReplicationProtocol.makeClient(trustRootsFile: trustRootsFile)
        let result = await body(client)
        try? await client.shutdown()
        return result
    }

    private static func agreement(configuration: Configuration, end: Offset, last: BatchHeader?, logger: Logger,
                                  client: HTTPClient) async -> Agreement {
        var probe = configuration
        probe.fetchBytes = ReplicationProtocol.fetchBytesRange.lowerBound
        do {
            let (header, _) = try await fetch(probe, client: client, from: end, last: last, durable: end, wait: false)
            return .agrees(leaderEpoch: header.leaderEpoch)
        } catch ReplicationError.refused(let status, _, _, _) where status == 410 {
            return .outOfRange
        } catch ReplicationError.refused(_, let code, _, let cut?) where code == "diverged" {
            return .diverged(cutTo: cut)
        } catch let error as ReplicationError {
            logger.warning("the leader does not agree with this journal; following will say why", metadata: ["error": "\(error)"])
            return .unknown
        } catch {
            logger.warning("could not ask the leader whether this journal diverged; following anyway", metadata: ["error": "\(error)"])
            return .unknown
        }
    }
}
