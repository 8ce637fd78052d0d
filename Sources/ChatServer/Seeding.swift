import ChatModel
import Foundation
import Hummingbird
import Journal
import Logging
import NIOCore
import Projections
import Replication

/// Seeding an empty standby from a leader whose retention deleted offset 0: the standby cannot
/// replay the journal from the start, so it takes the leader's committed room state (a
/// room-state snapshot), starts its journal where the leader's oldest segment starts, and copies
/// from there. History then holds the messages from that offset on (what the leader retains).
enum Seeding {
    /// `GET /replication/v1/snapshot` on a leader: where the standby's journal starts (the
    /// leader's oldest retained offset, at or below the state's offset, u64 little-endian),
    /// then the committed room state as a snapshot file (FORMAT.md §9).
    static func handle(_ request: Request, leader: ReplicationLeader, journal: Journal, live: LiveRooms) -> Response {
        if let refusal = leader.refusal(of: request, leading: true) { return refusal }
        let (state, position) = live.snapshot()
        let start = journal.earliestOffset
        guard start <= position else {
            return ChatServer.error(.serviceUnavailable, "unavailable", "retention is ahead of the applied state; ask again")
        }
        var body = ByteBuffer()
        body.writeInteger(start.value, endianness: .little)
        body.writeImmutableBuffer(RoomStateSnapshot.encode(state, nextOffset: position))
        return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: body))
    }

    /// On a standby whose journal holds nothing and whose leader no longer retains offset 0:
    /// makes the journal start at the leader's oldest offset and the projections start from
    /// the leader's room state. Returns whether it seeded.
    static func seedIfNeeded(_ configuration: ChatServerConfiguration, follower: ReplicationFollower.Configuration,
                             agreement: ReplicationFollower.Agreement, journalIsEmpty: Bool, logger: Logger) async throws -> Bool {
        guard journalIsEmpty, case .outOfRange = agreement else { return false }
        let (snapshot, start) = try await ReplicationFollower.snapshot(configuration: follower)
        let (_, covered) = try RoomStateSnapshot.decode(snapshot, limits: configuration.chatLimits)
        let directory = configuration.journalDirectory
        // A fresh directory: the journal files are made anew (the empty segment 0 goes).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where name.hasSuffix(".log") || name.hasSuffix(".index") {
            try FileManager.default.removeItem(atPath: directory + "/" + name)
        }
        try Journal.create(directory: directory, startingAt: start)
        let paths = ProjectionPaths(journalDirectory: directory)
        try FileManager.default.createDirectory(atPath: paths.directory, withIntermediateDirectories: true)
        for path in [paths.history, paths.history + "-wal", paths.history + "-shm"] where FileManager.default.fileExists(atPath: path) {
            try FileManager.default.removeItem(atPath: path)
        }
        try AtomicFile.write(snapshot, to: paths.roomStateSnapshot)
        try HistoryProjection(path: paths.history).begin(at: start)
        logger.notice("seeded from the leader: its journal no longer holds offset 0", metadata: [
            "journal.first_offset": "\(start)", "projection.room_state_offset": "\(covered)",
            "projection.history": "messages from offset \(start) on",
        ])
        return true
    }
}
