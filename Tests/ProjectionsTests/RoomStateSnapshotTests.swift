import ChatModel
import Foundation
import GRDB
import Journal
import Logging
import NIOCore
import Testing
@testable import Projections

@Suite struct RoomStateSnapshotTests {
    func sampleState() async throws -> RoomState {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 7)
        try await workload.append(2000, to: journal)
        await journal.close()
        return workload.state
    }

    @Test func snapshotRoundTripsTheState() async throws {
        let state = try await sampleState()
        #expect(state.rooms.count > 3)
        let bytes = RoomStateSnapshot.encode(state, nextOffset: Offset(2000))
        let (decoded, next) = try RoomStateSnapshot.decode(bytes, limits: state.limits)
        #expect(decoded == state)
        #expect(next == Offset(2000))
        #expect(RoomStateSnapshot.encode(decoded, nextOffset: next) == bytes, "equal states give equal bytes")
    }

    /// A small state (fewer payload bytes than a limit's value, 4,096 for message bytes): the
    /// limits were read as item counts and such a snapshot was refused as damaged.
    @Test func aSmallStateRoundTripsToo() throws {
        var state = RoomState()
        state.apply(ChatEvent(timestampMs: 1, actor: UserID("a")!, room: RoomID("r")!, body: .roomCreated(name: "R", isPrivate: false)), at: 0)
        let bytes = RoomStateSnapshot.encode(state, nextOffset: Offset(1))
        #expect(bytes.readableBytes < state.limits.messageBytesMax)
        let (decoded, next) = try RoomStateSnapshot.decode(bytes, limits: state.limits)
        #expect(decoded == state && next == Offset(1))
        #expect(try RoomStateSnapshot.decode(RoomStateSnapshot.encode(RoomState(), nextOffset: .zero), limits: ChatLimits()).1 == .zero)
    }

    @Test func revokedTokensRoundTripAndAVersion3SnapshotReadsAsNoneRevoked() throws {
        var state = RoomState()
        state.apply(ChatEvent(timestampMs: 1, actor: UserID("a")!, room: RoomID("r")!, body: .roomCreated(name: "R", isPrivate: false)), at: 0)
        let version3 = RoomStateSnapshot.encode(state, nextOffset: Offset(1))
        state.apply(ChatEvent(timestampMs: 2, actor: UserID("b")!, room: .none, body: .tokensRevoked(beforeMs: 3000)), at: 1)
        let bytes = RoomStateSnapshot.encode(state, nextOffset: Offset(2))
        let (decoded, next) = try RoomStateSnapshot.decode(bytes, limits: state.limits)
        #expect(decoded == state && next == Offset(2) && decoded.tokensRevokedBefore == [UserID("b")!: 3000])
        // Version 3, as an older release wrote it: the same layout without the revoked tokens
        // and the room's version-5 fields.
        let (restored, _) = try RoomStateSnapshot.decode(Self.older(version3, version: 3), limits: state.limits)
        #expect(restored.tokensRevokedBefore.isEmpty && restored.rooms.count == 1)
    }

    /// `snapshot` (of a state with one room, no direct peer, markers or reactions, and no
    /// revoked tokens) as version 3 or 4 wrote it: the room's version-5 fields (an empty peer,
    /// two zero counts: 10 bytes before the revoked tokens' count) taken out, and for 3 that
    /// count too; the CRC made again.
    static func older(_ snapshot: ByteBuffer, version: UInt16) -> ByteBuffer {
        var bytes = Array(snapshot.readableBytesView)
        bytes.removeSubrange((bytes.count - 14)..<(bytes.count - 4))
        if version == 3 { bytes.removeLast(4) }
        var old = ByteBuffer(bytes: bytes)
        old.setInteger(version, at: 4, endianness: .little)
        old.setInteger(UInt64(old.readableBytes - 28), at: 16, endianness: .little)
        let payload = old.getSlice(at: 28, length: old.readableBytes - 28) ?? ByteBuffer()
        old.setInteger(RoomStateSnapshot.checksum(header: old, payload: payload), at: 24, endianness: .little)
        return old
    }

    @Test func directRoomsMarkersAndReactionsRoundTripAndAVersion4SnapshotReadsAsNone() throws {
        var state = RoomState()
        let (a, b, r) = (UserID("a")!, UserID("b")!, RoomID("r")!)
        state.apply(ChatEvent(timestampMs: 1, actor: a, room: r, body: .roomCreated(name: "R", isPrivate: false)), at: 0)
        let version4 = Self.older(RoomStateSnapshot.encode(state, nextOffset: Offset(1)), version: 4)
        let (restored, _) = try RoomStateSnapshot.decode(version4, limits: state.limits)
        #expect(restored == state)
        state.apply(ChatEvent(timestampMs: 2, actor: a, room: r, body: .messageSent(clientMessageID: "1", text: "x", clientCreatedMs: 0)), at: 1)
        state.apply(ChatEvent(timestampMs: 3, actor: b, room: r, body: .memberJoined), at: 2)
        state.apply(ChatEvent(timestampMs: 3, actor: b, room: r, body: .readMarked(message: MessageID(1))), at: 3)
        state.apply(ChatEvent(timestampMs: 4, actor: b, room: r, body: .reactionAdded(message: MessageID(1), emoji: "👍")), at: 4)
        state.apply(ChatEvent(timestampMs: 4, actor: a, room: r, body: .reactionAdded(message: MessageID(1), emoji: "👍")), at: 5)
        state.apply(ChatEvent(timestampMs: 5, actor: b, room: RoomID("dm:a:b")!, body: .directRoomCreated(peer: a)), at: 6)
        let bytes = RoomStateSnapshot.encode(state, nextOffset: Offset(7))
        let (decoded, _) = try RoomStateSnapshot.decode(bytes, limits: state.limits)
        #expect(decoded == state)
        #expect(decoded.room(r)?.readMarkers == [b: MessageID(1)])
        #expect(decoded.room(r)?.reactions[MessageID(1)] == [RoomState.Reaction(emoji: "👍", users: [b, a])])
        #expect(decoded.directRoom(of: a, and: b) == RoomID("dm:a:b"), "the pair index is made again from the rooms")
    }

    @Test func everyBitFlipOfASnapshotIsRefused() throws {
        var state = RoomState()
        state.apply(ChatEvent(timestampMs: 1, actor: UserID("a")!, room: RoomID("r")!, body: .roomCreated(name: "R", isPrivate: true)), at: 0)
        state.apply(ChatEvent(timestampMs: 2, actor: UserID("a")!, room: RoomID("r")!, body: .messageSent(clientMessageID: "c", text: "t", clientCreatedMs: 0)), at: 1)
        let bytes = Array(RoomStateSnapshot.encode(state, nextOffset: Offset(2)).readableBytesView)
        for byte in bytes.indices {
            for bit in 0..<8 {
                var flipped = bytes
                flipped[byte] ^= UInt8(1 << bit)
                #expect(throws: SnapshotError.self, "bit \(bit) of byte \(byte)") {
                    try RoomStateSnapshot.decode(ByteBuffer(bytes: flipped), limits: state.limits)
                }
            }
        }
        for length in 0..<bytes.count {
            #expect(throws: SnapshotError.self) { try RoomStateSnapshot.decode(ByteBuffer(bytes: bytes[..<length]), limits: state.limits) }
        }
    }

    @Test func aSnapshotMadeWithOtherLimitsIsRefused() throws {
        let bytes = RoomStateSnapshot.encode(RoomState(), nextOffset: Offset(5))
        var other = ChatLimits()
        other.clientMessageIDWindow += 1
        #expect(throws: SnapshotError.self) { try RoomStateSnapshot.decode(bytes, limits: other) }
    }

    @Test func aCorruptOrMissingSnapshotFallsBackToFullReplay() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 3)
        try await workload.append(1500, to: journal)
        let paths = ProjectionPaths(journalDirectory: directory.journal)

        let first = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet)
        #expect(first.roomState?.nextOffset == .zero, "no snapshot yet: starts at 0")
        try first.catchUp()
        #expect(first.roomState?.state == workload.state)

        // A fresh snapshot: the next runner starts at its offset.
        let second = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet)
        #expect(second.roomState?.nextOffset == Offset(1500))

        // Damage it: the next runner replays from 0 and ends with the same state.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: paths.roomStateSnapshot))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: paths.roomStateSnapshot))
        let third = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet)
        #expect(third.roomState?.nextOffset == .zero)
        try third.catchUp()
        #expect(third.roomState?.state == workload.state)
        await journal.close()
    }

    @Test func aStartUpWithNothingToReplayLeavesTheSnapshotAlone() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.journal, configuration: journalConfiguration(), logger: .quiet)
        var workload = Workload(seed: 5)
        try await workload.append(500, to: journal)
        let paths = ProjectionPaths(journalDirectory: directory.journal)
        try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet).catchUp()
        func modified() throws -> Date? {
            try FileManager.default.attributesOfItem(atPath: paths.roomStateSnapshot)[.modificationDate] as? Date
        }
        let past = Date(timeIntervalSince1970: 1_000_000)
        try FileManager.default.setAttributes([.modificationDate: past], ofItemAtPath: paths.roomStateSnapshot)

        // Caught up from the snapshot with nothing new: the file is not written again.
        try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet).catchUp()
        #expect(try modified() == past)
        // With new events it is.
        try await workload.append(10, to: journal)
        let runner = try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet)
        try runner.catchUp()
        #expect(try modified() != past)
        #expect(try ProjectionRunner(journal: journal, paths: paths, kinds: [.roomState], logger: .quiet).roomState?.state == workload.state)
        await journal.close()
    }
}
