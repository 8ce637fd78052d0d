import Foundation
import Hummingbird
import Journal
import Logging
import NIOCore
import Replication
import ServiceLifecycle
import Synchronization

/// `POST /api/promote` on a running standby: it becomes the leader, with a new leader epoch.
///
/// In order: stop copying from the old leader (no fetch or append in flight); wait until the
/// tailer has applied everything copied, so the decider's state is the journal's; begin the
/// new epoch durably (`leader-epochs`), one above any it or its leader used; let the journal
/// take local appends and the decider take commands; answer standbys' fetches. Then, best
/// effort, tell the old leader (`/replication/v1/fence`), which stops taking writes. Clients'
/// `after` offsets stay valid: message ids are offsets, the same on both nodes.
///
/// An old leader that is paused or cut off when it is told learns nothing then; as a service,
/// the promotion tells it again (`fenceRetryDelays`) until it answers that it is fenced, this
/// node stops leading, or the server stops: so a former leader that comes back steps down by
/// itself within seconds, without a restart.
final class Promotion: Service, Sendable {
    let journal: Journal
    let decider: Decider
    let live: LiveRooms
    let leader: ReplicationLeader
    let follower: ReplicationFollower?
    let logger: Logger
    /// One promotion at a time.
    private let busy = Mutex(false)
    /// The epoch the old leader has yet to learn of.
    private let unfenced = Mutex<UInt32?>(nil)
    /// Between two tries to fence the old leader: from the first, doubling, to the last.
    static let fenceRetryDelays: ClosedRange<Duration> = .milliseconds(500) ... .seconds(5)

    init(journal: Journal, decider: Decider, live: LiveRooms, leader: ReplicationLeader, follower: ReplicationFollower?, logger: Logger) {
        self.journal = journal
        self.decider = decider
        self.live = live
        self.leader = leader
        self.follower = follower
        self.logger = logger
    }

    struct Answer: Codable {
        var role: String
        var epoch: UInt32
        var offset: UInt64
        var oldLeaderFenced: Bool
    }

    func handle(_ request: Request) async -> Response {
        if let refusal = leader.refusal(of: request) { return refusal }
        guard case .following(let oldLeader) = leader.role, let follower else {
            return ChatServer.error(.conflict, "not_standby", "this node is not a standby (it is \(leader.status().role))")
        }
        let end: Offset
        let epoch: UInt32
        switch await takeOver(epoch: nil, inSync: nil) {
        case .success(let promoted): (epoch, end) = promoted
        case .failure(let failure): return failure.response
        }
        let fenced = await follower.fenceLeader(epoch: epoch)
        if !fenced {
            logger.warning("the old leader could not be told; telling it again until it answers", metadata: ["replication.leader": "\(oldLeader)"])
            unfenced.withLock { $0 = epoch }
        }
        return ChatServer.json(Answer(role: "leader", epoch: epoch, offset: end.value, oldLeaderFenced: fenced))
    }

    /// Why a standby could not take over.
    struct Failure: Error {
        let response: Response
    }

    /// Makes this standby the leader: stops copying, waits until what was copied is applied,
    /// begins `epoch` (nil: one above any this node or its leader used; in a cluster, the
    /// epoch etcd granted), and takes commands. With `inSync` (a cluster), commits wait for
    /// those members of the in-sync set from the first one.
    /// - Returns: the epoch and the journal's end where it began.
    func takeOver(epoch: UInt32?, inSync: Set<String>?) async -> Result<(UInt32, Offset), Failure> {
        guard case .following(let oldLeader) = leader.role, let follower else {
            return .failure(Failure(response: ChatServer.error(.conflict, "not_standby", "this node is not a standby (it is \(leader.status().role))")))
        }
        guard busy.withLock({ busy in defer { busy = true }; return !busy }) else {
            return .failure(Failure(response: ChatServer.error(.conflict, "in_progress", "a promotion is under way")))
        }
        defer { busy.withLock { $0 = false } }
        // A standby seeded from its leader's room state leads only once its journal reaches it.
        guard journal.committedOffset >= live.position else {
            return .failure(Failure(response: ChatServer.error(.conflict, "not_caught_up",
                                    "this standby's journal ends at \(journal.committedOffset), before the room state it was seeded with (\(live.position)); let it catch up first")))
        }
        logger.notice("promotion: stopping replication from the old leader", metadata: ["replication.leader": "\(oldLeader)"])
        await follower.stop()
        // Its journal is the truth now: a cluster standby applies what it holds beyond the old
        // leader's last commit point too.
        leader.leaderCommitted(Offset(UInt64.max))
        let end = journal.committedOffset
        let deadline = ContinuousClock.now + .seconds(30)
        while live.position < end, live.failure == nil, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        guard live.position >= end else {
            return .failure(Failure(response: ChatServer.error(.serviceUnavailable, "unavailable",
                                                               "the copied journal could not be applied: \(live.failure ?? "timed out")")))
        }

        let epoch = epoch ?? max(journal.leaderEpochs.current, journal.seenEpoch, follower.leaderEpoch) + 1
        do {
            try journal.beginEpoch(epoch)
        } catch {
            return .failure(Failure(response: ChatServer.error(.internalServerError, "internal",
                                                               "the new leader epoch could not be recorded: \(error)")))
        }
        if let inSync { leader.useInSyncSet(inSync) }
        journal.setFollowing(false)
        decider.lead()
        leader.lead()
        logger.notice("promoted: this node leads", metadata: ["replication.epoch": "\(epoch)", "journal.offset": "\(end)"])
        return .success((epoch, end))
    }

    /// Tells the old leader of this node's epoch until it has learnt it (see the type's doc).
    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var delay = Self.fenceRetryDelays.lowerBound
            while !Task.isCancelled {
                try await Task.sleep(for: delay)
                guard let epoch = self.unfenced.withLock({ $0 }), let follower = self.follower else {
                    delay = Self.fenceRetryDelays.lowerBound
                    continue
                }
                guard self.leader.role == .leading, self.leader.epoch == epoch else {
                    self.unfenced.withLock { $0 = nil }
                    continue
                }
                if await follower.fenceLeader(epoch: epoch) {
                    self.unfenced.withLock { $0 = nil }
                    self.logger.notice("the old leader learnt of this node's epoch: it is fenced", metadata: [
                        "replication.leader": "\(follower.configuration.leaderURL)", "replication.epoch": "\(epoch)",
                    ])
                } else {
                    delay = min(delay * 2, Self.fenceRetryDelays.upperBound)
                }
            }
        }
    }
}

extension ChatServer {
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        ReplicationLeader.json(value, status: status)
    }

    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        ReplicationLeader.error(status, code, message)
    }
}
