import ChatModel
import Foundation
import Hummingbird
import HummingbirdSocketIO
import Journal
import Logging
import Projections
import Replication
import ServiceLifecycle
import SocketIO
import Synchronization
import Testing

@testable import ChatServer

/// A chat node without sockets or HTTP: the journal, the projections caught up from it, the
/// service, and its tailer and History writer running, as `chatlog serve` wires them.
final class ServiceNode: Sendable {
    let journal: Journal
    let service: ChatService
    let tasks: [Task<Void, Error>]
    let follower: ReplicationFollower?
    let followerTask: Task<Void, Error>?

    final class NoHandler: SocketIOHandler {
        func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async {}
    }

    static var quiet: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    /// - Parameter standbyOf: the URL of a leader to forward commands to; the node is then a
    ///   standby, as `--standby-of` makes it (without copying the leader's journal).
    init(directory: String, configuration: JournalConfiguration = JournalConfiguration(), standbyOf leader: String? = nil,
         limits: ChatServerLimits = ChatServerLimits()) throws {
        let logger = Self.quiet
        journal = try Journal.open(directory: directory, configuration: configuration, logger: logger)
        let runner = try ProjectionRunner(journal: journal, paths: ProjectionPaths(journalDirectory: directory), logger: logger)
        try runner.catchUp()
        guard let roomState = runner.roomState, let history = runner.history, let search = runner.search else { throw CancellationError() }
        let decider = Decider(journal: journal, roomState: roomState.state, limits: limits)
        let live = LiveRooms(rooms: roomState.state, position: journal.committedOffset, limits: limits, recovery: false)
        let commit = CommitPoint(journal: journal, replication: nil)
        let historyWriter = try ProjectionWriter.history(history, commit: commit, decider: decider, interval: limits.historyWriteInterval, readBytesMax: limits.readBytesMax,
                                                         logger: logger)
        let searchWriter = try ProjectionWriter.search(search, history: history, after: historyWriter, commit: commit, interval: limits.searchIndexInterval,
                                                       readBytesMax: limits.readBytesMax, logger: logger)
        var forwarder: Forwarder?
        if let leader {
            decider.followLeader(leader)
            let follower = ReplicationFollower(configuration: .init(leaderURL: leader, secret: try ReplicationSecret(FakeLeader.secret),
                                                                    name: "standby"),
                                               journal: journal, logger: logger)
            self.follower = follower
            followerTask = Task { try await follower.run() }
            forwarder = Forwarder(follower: follower, journal: journal, timeout: .seconds(10), logger: logger)
        } else {
            follower = nil
            followerTask = nil
        }
        service = ChatService(decider: decider, live: live, journal: journal, history: history, historyWriter: historyWriter,
                              search: search, searchWriter: searchWriter, limits: limits, forwarder: forwarder, logger: logger)
        let socketIO = SocketIOServer(configuration: .init(), handler: NoHandler(), logger: logger)
        let tailer = Tailer(service: service, commit: commit, socketIO: socketIO, followsLeader: leader != nil)
        tasks = [Task { try await tailer.run() }, Task { try await historyWriter.run() }, Task { try await searchWriter.run() }]
    }

    func close() async {
        await follower?.stop()
        _ = await followerTask?.result
        service.decider.refuse("closing")
        for task in tasks { task.cancel() }
        for task in tasks { _ = await task.result }
        await journal.close()
    }

    /// Runs `body` on a node, and closes it however `body` ends.
    static func running(directory: String, configuration: JournalConfiguration = JournalConfiguration(), standbyOf leader: String? = nil,
                        limits: ChatServerLimits = ChatServerLimits(), _ body: (ServiceNode) async throws -> Void) async throws {
        let node = try ServiceNode(directory: directory, configuration: configuration, standbyOf: leader, limits: limits)
        do {
            try await body(node)
        } catch {
            await node.close()
            throw error
        }
        await node.close()
    }

    static func withDirectory(_ body: (String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatlog-service-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await body(directory)
    }
}

/// A leader that answers forwarded commands as it is told, and keeps what it was sent.
final class FakeLeader: Sendable {
    static let secret = "a-test-secret-of-enough-bytes"
    let answer: Mutex<ForwardedAnswer>
    let received = Mutex<[ForwardedCommand]>([])
    private let port = Mutex<Int?>(nil)

    init(answer: ForwardedAnswer) {
        self.answer = Mutex(answer)
    }

    /// Runs `body` with the leader's URL while it listens.
    func serving(_ body: (String) async throws -> Void) async throws {
        let router = Router()
        router.post(RouterPath(ReplicationProtocol.commandPath)) { request, _ -> Response in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            if let command = try? ReplicationJSON.decoder.decode(ForwardedCommand.self, from: Data(body.readableBytesView)) {
                self.received.withLock { $0.append(command) }
            }
            return ChatServer.json(self.answer.withLock { $0 })
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in self.port.withLock { $0 = channel.localAddress?.port } },
                              logger: ServiceNode.quiet)
        let group = ServiceGroup(configuration: .init(services: [app], logger: ServiceNode.quiet))
        let running = Task { try await group.run() }
        var bound: Int?
        for _ in 0..<500 where bound == nil {
            bound = port.withLock { $0 }
            if bound == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        var failure: (any Error)?
        if let bound {
            do { try await body("http://127.0.0.1:\(bound)") } catch { failure = error }
        }
        await group.triggerGracefulShutdown()
        _ = await running.result
        if let failure { throw failure }
        if bound == nil { throw CancellationError() }
    }
}

/// The chat service on its own: every command and query against a real journal and real
/// projections, answered once committed and applied, with no socket or HTTP in the way.
@Suite struct ChatServiceTests {
    let alice = UserID("alice")!
    let bob = UserID("bob")!
    let carol = UserID("carol")!
    let room = RoomID("plans")!

    func code<T>(_ result: Result<T, ChatFailure>) -> ChatFailure.Code? {
        if case .failure(let failure) = result { return failure.code }
        return nil
    }

    @Test func everyCommandAndQueryOfAPrivateRoom() async throws {
        try await ServiceNode.withDirectory { directory in
            try await ServiceNode.running(directory: directory) { node in
                let service = node.service
                let created = try await service.perform(.create(room, isPrivate: true, name: "Plans"), as: alice).get()
                // Answered once applied: the room is there to read at once.
                #expect(created.last != nil && service.live.position > created.last!)
                #expect(service.room(room, for: alice)?.name == "Plans")
                #expect(code(await service.perform(.join(room, createIfMissing: true), as: bob)) == .rule(.notInvited))
                #expect(code(await service.perform(.invite(room, bob), as: bob)) == .rule(.notOwner))
                _ = try await service.perform(.invite(room, bob), as: alice).get()
                #expect(try service.roster(of: room, as: alice).get().invited == [bob])
                #expect(code(service.roster(of: room, as: bob)) == .rule(.notMember), "invited is not yet a member")
                _ = try await service.perform(.join(room, createIfMissing: true), as: bob).get()
                #expect(try service.roster(of: room, as: bob).get().members == [alice, bob])
                #expect(try service.roster(of: room, as: bob).get().invited == nil, "the owner's alone")
                #expect(code(service.roster(of: room, as: carol)) == .rule(.notMember))
                #expect(code(service.roster(of: RoomID("nowhere")!, as: alice)) == .rule(.roomNotFound))

                let sent = try await service.perform(.send(room, text: "hi", createdMs: 1, createdText: nil, clientID: "b1"), as: bob).get()
                let id = try #require(sent.messageID)
                #expect(sent.last == id)
                // Read your writes: History has the message as soon as the send is answered.
                var page = try await service.history(of: room, as: alice, before: nil, after: nil, limit: nil).get()
                #expect(page.map(\.text) == ["hi"] && page.first?.offset == id.value && page.first?.clientMessageID == "b1")
                #expect(code(await service.history(of: room, as: carol, before: nil, after: nil, limit: nil)) == .rule(.notMember))
                #expect(code(await service.history(of: room, as: alice, before: nil, after: nil, limit: 0)) == .invalidPayload)

                #expect(code(await service.perform(.edit(room, MessageID(id.value), text: "no"), as: alice)) == .rule(.notAuthor))
                _ = try await service.perform(.edit(room, MessageID(id.value), text: "hello"), as: bob).get()
                _ = try await service.perform(.delete(room, MessageID(id.value)), as: bob).get()
                page = try await service.history(of: room, as: bob, before: nil, after: nil, limit: 10).get()
                #expect(page.count == 1 && page[0].text == nil && page[0].deletedMs != nil)

                _ = try await service.perform(.invite(room, carol), as: alice).get()
                _ = try await service.perform(.revokeInvite(room, carol), as: alice).get()
                #expect(code(await service.perform(.join(room, createIfMissing: true), as: carol)) == .rule(.notInvited))
                #expect(service.groups(of: bob).map(\.id) == [room])
                #expect(service.rooms(visibleTo: carol).isEmpty)
                #expect(service.memberships(of: bob) == [room])
                #expect(code(await service.perform(.remove(room, alice), as: alice)) == .rule(.cannotRemoveOwner))
                _ = try await service.perform(.remove(room, bob), as: alice).get()
                #expect(service.groups(of: bob).isEmpty)
                #expect(code(await service.history(of: room, as: bob, before: nil, after: nil, limit: nil)) == .rule(.notMember))
            }
        }
    }

    /// History applies what commits within `historyWriteInterval` in one transaction, and a
    /// request that waits for it ends the wait at once: read your writes without the interval.
    @Test func historyAppliesSeveralCommitsInOneTransactionAndAWaitingReadEndsTheWait() async throws {
        var limits = ChatServerLimits()
        limits.historyWriteInterval = .seconds(1)
        try await ServiceNode.withDirectory { directory in
            try await ServiceNode.running(directory: directory, limits: limits) { node in
                let service = node.service
                _ = try await service.perform(.create(room, isPrivate: false, name: "Plans"), as: alice).get()
                // The room's creation is applied first; its transaction starts the interval.
                _ = try await service.history(of: room, as: alice, before: nil, after: nil, limit: nil).get()
                var ids: [Offset] = []
                for n in 0..<3 {
                    let sent = try await service.perform(.send(room, text: "m\(n)", createdMs: 1, createdText: nil, clientID: "c\(n)"), as: alice).get()
                    ids.append(try #require(sent.messageID))
                }
                // Acknowledged, and not yet in History's file: its writer waits out the interval.
                #expect(try node.service.history.nextOffset() <= ids[0])
                let asked = ContinuousClock.now
                let page = try await service.history(of: room, as: alice, before: nil, after: nil, limit: nil).get()
                #expect(page.map(\.text) == ["m0", "m1", "m2"])
                #expect(asked.duration(to: .now) < .milliseconds(500), "a waiting read ends the writer's pause")
                #expect(try node.service.history.nextOffset() > ids[2], "all three applied, once asked")
            }
        }
    }

    @Test func aJoinCreatesAMissingPublicRoomOnlyWhenAskedAndAgainAppendsNothing() async throws {
        try await ServiceNode.withDirectory { directory in
            try await ServiceNode.running(directory: directory) { node in
                let service = node.service
                let lobby = RoomID("lobby")!
                #expect(code(await service.perform(.join(lobby, createIfMissing: false), as: alice)) == .rule(.roomNotFound))
                let first = try await service.perform(.join(lobby, createIfMissing: true), as: alice).get()
                #expect(service.room(lobby, for: carol)?.isPrivate == false)
                #expect(service.rooms(visibleTo: carol).map(\.id) == [lobby])
                let before = node.journal.committedOffset
                let again = try await service.perform(.join(lobby, createIfMissing: true), as: alice).get()
                #expect(node.journal.committedOffset == before, "a member joining again appends nothing")
                #expect(again.last == first.last)
                _ = try await service.perform(.join(lobby, createIfMissing: false), as: bob).get()
                #expect(service.presence(in: lobby).members == [alice, bob])
                let left = try await service.perform(.leave(lobby), as: bob).get()
                #expect(left.last == Offset(before.value + 1))
                #expect(service.presence(in: lobby).members == [alice])
            }
        }
    }

    /// A send without a client id gets one the server makes up, with the reserved prefix; a
    /// resend with a client's id is answered with the original's id, before and after a restart.
    @Test func sendsAreIdempotentAcrossARestart() async throws {
        try await ServiceNode.withDirectory { directory in
            let send = ChatService.Command.send(room, text: "once", createdMs: 5, createdText: nil, clientID: "a-1")
            var original = Offset.zero
            var anonymous = Offset.zero
            try await ServiceNode.running(directory: directory) { node in
                _ = try await node.service.perform(.create(room, isPrivate: false, name: nil), as: alice).get()
                original = try #require(try await node.service.perform(send, as: alice).get().messageID)
                #expect(try await node.service.perform(send, as: alice).get().messageID == original)
                anonymous = try #require(try await node.service.perform(
                    .send(room, text: "no id", createdMs: 6, createdText: nil, clientID: nil), as: alice).get().messageID)
            }

            try await ServiceNode.running(directory: directory) { node in
                let end = node.journal.committedOffset
                #expect(try await node.service.perform(send, as: alice).get().messageID == original)
                #expect(node.journal.committedOffset == end, "the resend appended nothing")
                let page = try await node.service.history(of: room, as: alice, before: nil, after: nil, limit: nil).get()
                #expect(page.map(\.text) == ["once", "no id"])
                let made = try #require(page.first { $0.offset == anonymous.value }?.clientMessageID)
                #expect(made.hasPrefix(ClientMessageIDs.generatedPrefix) && made.utf8.count == ClientMessageIDs.generatedPrefix.utf8.count + 20)
            }
        }
    }

    /// A journal whose write fails: the command in flight and every later one are answered
    /// `unavailable`, never acknowledged (fail-stop).
    @Test func aCommitThatFailsIsNeverAcknowledged() async throws {
        try await ServiceNode.withDirectory { directory in
            var configuration = JournalConfiguration()
            configuration.failWritesAfterBytes = 600
            try await ServiceNode.running(directory: directory, configuration: configuration) { node in
                let service = node.service
                _ = try await service.perform(.create(room, isPrivate: false, name: nil), as: alice).get()
                var failed: ChatFailure?
                for n in 0..<50 {
                    let result = await service.perform(.send(room, text: String(repeating: "x", count: 100), createdMs: 1, createdText: nil,
                                                             clientID: "c\(n)"), as: alice)
                    if case .failure(let failure) = result {
                        failed = failure
                        break
                    }
            }
            #expect(failed?.code == .unavailable)
            #expect(code(await service.perform(.join(RoomID("other")!, createIfMissing: true), as: bob)) == .unavailable)
            #expect(service.live.failure != nil)
            }
        }
    }

    /// On a standby, a command goes to the leader, as the event a client would send, with the
    /// client id the standby made up, a deadline and the epoch; the leader's answer comes back
    /// as the service's.
    @Test func aStandbyForwardsToItsLeaderAndReportsItsAnswer() async throws {
        let leader = FakeLeader(answer: ForwardedAnswer(ack: #"{"ok":true,"id":41}"#, offset: nil))
        try await leader.serving { url in
            try await ServiceNode.withDirectory { directory in
                // The standby knows the room (it would have copied it from its leader).
                try await ServiceNode.running(directory: directory) { node in
                    _ = try await node.service.perform(.create(room, isPrivate: true, name: nil), as: alice).get()
                }
                try await ServiceNode.running(directory: directory, standbyOf: url) { node in
                    let service = node.service
                    let before = ChatService.nowMs()
                    let sent = try await service.perform(.send(room, text: "via", createdMs: 3, createdText: nil, clientID: nil), as: alice).get()
                    #expect(sent.messageID == Offset(41))
                    let forwarded = try #require(leader.received.withLock { $0.first })
                    #expect(forwarded.user == "alice" && forwarded.event == "send-group-message")
                    let payload = try JSONParser.parse(forwarded.payload)
                    #expect(payload["group"]?.stringValue == "plans" && payload["message"]?.stringValue == "via")
                    #expect(payload["client_id"]?.stringValue?.hasPrefix(ClientMessageIDs.generatedPrefix) == true)
                    #expect(forwarded.deadlineMs >= before + 5_000 && forwarded.deadlineMs <= ChatService.nowMs() + 5_000)

                    leader.answer.withLock {
                        $0 = ForwardedAnswer(ack: #"{"ok":false,"error":{"code":"not_owner","message":"only the owner"}}"#, offset: nil)
                }
                let refused = await service.perform(.invite(room, carol), as: alice)
                #expect(refused == .failure(ChatFailure(.rule(.notOwner), "only the owner")))
                #expect(leader.received.withLock { $0.last?.event } == "invite")

                // A command a standby was forwarded is never forwarded on.
                #expect(code(await service.perform(.invite(room, bob), as: alice, forwarding: false)) == .notLeader)
                #expect(leader.received.withLock { $0.count } == 2)
                }
            }
        }
    }

    @Test func aStandbyWhoseLeaderIsGoneAnswersUnavailable() async throws {
        try await ServiceNode.withDirectory { directory in
            // Nothing listens on port 1.
            try await ServiceNode.running(directory: directory, standbyOf: "http://127.0.0.1:1") { node in
                #expect(code(await node.service.perform(.create(room, isPrivate: false, name: nil), as: alice)) == .unavailable)
            }
        }
    }
}
