import ChatModel
import Foundation
import Journal
import Logging
import NIOCore
import Testing

@testable import ChatServer

/// The decider decides every command against the state that holds everything appended
/// before it, committed or not: of two conflicting commands, the second sees the first.
@Suite struct DeciderTests {
    func withDecider(_ body: (Decider, Journal) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatlog-decider-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = JournalConfiguration()
        configuration.durability = .everyBatch
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let journal = try Journal.open(directory: directory, configuration: configuration, logger: logger)
        let decider = Decider(journal: journal, roomState: RoomState(), limits: ChatServerLimits())
        try await body(decider, journal)
        await journal.close()
    }

    let alice = UserID("alice")!
    let bob = UserID("bob")!
    let room = RoomID("general")!

    @Test func twoCreationsOfOneRoomDecidedAtOnceAcceptOne() async throws {
        try await withDecider { decider, journal in
            let outcomes = await withTaskGroup(of: Decider.Outcome.self) { group in
                for user in [alice, bob] {
                    group.addTask { decider.decide(.createRoom(room, name: "G", isPrivate: false), by: user, nowMs: 1) }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let appended = outcomes.filter { if case .appended = $0 { true } else { false } }
            let refused = outcomes.filter { $0 == .rejected(Rejection(.roomExists, "room general already exists")) }
            #expect(appended.count == 1 && refused.count == 1, "\(outcomes)")
            let committed = try await journal.waitForCommit(of: .zero)
            #expect(committed)
            #expect(journal.committedOffset == Offset(1))
        }
    }

    @Test func aResendWithTheSameClientIDIsADuplicateBeforeTheFirstCommits() async throws {
        try await withDecider { decider, _ in
            guard case .appended = decider.join(room, by: alice, createIfMissing: true, nowMs: 1) else {
                Issue.record("the first joiner creates the room")
                return
            }
            let send = ChatCommand.send(room, clientMessageID: "c1", text: "hi", clientCreatedMs: 0)
            // Both decided before anything is committed: the second sees the first.
            let first = decider.decide(send, by: alice, nowMs: 2)
            let second = decider.decide(send, by: alice, nowMs: 3)
            guard case .appended(let range) = first else {
                Issue.record("the first send is appended: \(first)")
                return
            }
            #expect(second == .duplicate(MessageID(range.first.value)))
        }
    }

    @Test func aRemovalRacingASendWinsForWhicheverIsDecidedFirst() async throws {
        try await withDecider { decider, _ in
            _ = decider.decide(.createRoom(room, name: "G", isPrivate: true), by: alice, nowMs: 1)
            _ = decider.decide(.invite(room, user: bob), by: alice, nowMs: 2)
            _ = decider.join(room, by: bob, createIfMissing: false, nowMs: 3)
            #expect(decider.decide(.remove(room, user: bob), by: alice, nowMs: 4) != .unchanged)
            let send = decider.decide(.send(room, clientMessageID: "late", text: "x", clientCreatedMs: 0), by: bob, nowMs: 5)
            #expect(send == .rejected(Rejection(.notMember, "only members may send to the private room general")))
        }
    }

    @Test func aMemberJoiningAgainAppendsNothing() async throws {
        try await withDecider { decider, journal in
            _ = decider.join(room, by: alice, createIfMissing: true, nowMs: 1)
            #expect(decider.join(room, by: alice, createIfMissing: true, nowMs: 2) == .unchanged)
            #expect(decider.nextOffset == Offset(1))
            let committed = try await journal.waitForCommit(of: .zero)
            #expect(committed)
        }
    }

    @Test func aUserMayCreateOnlySoManyRooms() async throws {
        try await withDecider { decider, _ in
            var limits = ChatServerLimits()
            limits.roomsCreatedPerUserMax = 2
            let limited = Decider(journal: decider.journal, roomState: RoomState(), limits: limits)
            for n in 0..<2 {
                guard case .appended = limited.decide(.createRoom(RoomID("r\(n)")!, name: "R", isPrivate: false), by: alice, nowMs: 1) else {
                    Issue.record("room \(n) is within the limit")
                    return
                }
            }
            guard case .refused(let failure) = limited.join(RoomID("r2")!, by: alice, createIfMissing: true, nowMs: 2) else {
                Issue.record("a third room is refused")
                return
            }
            #expect(failure.code == .limitExceeded)
        }
    }

    @Test func afterTheJournalClosesEveryCommandIsUnavailable() async throws {
        try await withDecider { decider, journal in
            await journal.close()
            guard case .unavailable = decider.join(room, by: alice, createIfMissing: true, nowMs: 1) else {
                Issue.record("a closed journal accepts nothing")
                return
            }
            // The refusal sticks: the state that may hold events never committed is dropped.
            guard case .unavailable = decider.decide(.createRoom(room, name: "G", isPrivate: false), by: bob, nowMs: 2) else {
                Issue.record("the decider refuses for good")
                return
            }
        }
    }
}
