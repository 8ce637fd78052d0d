import ChatModel
import Journal
import Logging
import SocketIO
import Synchronization
import Testing

@testable import ChatServer
@testable import HummingbirdSocketIO

/// The acks the tailer sends once their sends are applied, read back from a polling session.
@Suite struct CommitWaitersTests {
    final class Connected: SocketIOHandler {
        let socket = Mutex<SocketRef?>(nil)
        func connected(_ socket: SocketRef, server: SocketIOServer) async { self.socket.withLock { $0 = socket } }
        func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async {}
    }

    /// Opens a polling session and connects its default namespace; returns its socket and id.
    func connectedSocket(_ server: SocketIOServer, _ handler: Connected) async throws -> (SocketRef, String) {
        guard case .opened(let sid, _) = server.handshake(transport: .polling, client: "test") else {
            throw CancellationError()
        }
        let (ok, known, calls) = server.post(sid: sid, body: Array("40".utf8))
        #expect(ok && known)
        await server.perform(calls)
        let socket = try #require(handler.socket.withLock { $0 })
        _ = await server.poll(sid: sid, token: "connect")  // the CONNECT reply
        return (socket, sid)
    }

    /// A server with one polling session connected to the default namespace.
    func connectedServer() async throws -> (SocketIOServer, SocketRef, String) {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let handler = Connected()
        let server = SocketIOServer(configuration: .init(), handler: handler, logger: logger)
        let (socket, sid) = try await connectedSocket(server, handler)
        return (server, socket, sid)
    }

    /// The ack ids the socket was sent since the last call, in order. (An ack with the id
    /// `sentinel` is queued first, so that the poll never waits for what was not sent.)
    func ackIDs(_ server: SocketIOServer, _ socket: SocketRef, _ sid: String, token: String) async -> [UInt64] {
        server.ack(socket, id: Self.sentinel, [])
        guard case .body(let body) = await server.poll(sid: sid, token: token).0 else { return [] }
        // Packets are separated by the record separator; an ack is `43<id>[...]`.
        return body.split(separator: "\u{1E}").compactMap { packet in
            guard packet.hasPrefix("43") else { return nil }
            return UInt64(packet.dropFirst(2).prefix { $0.isNumber })
        }.filter { $0 != Self.sentinel }
    }

    static let sentinel: UInt64 = 1_000

    /// Answers registered out of offset order: a settle returns exactly those below its end, in
    /// offset order, keeps the others for a later settle, and never returns one twice.
    @Test func aSettleSendsTheAnswersBelowItsEndAndKeepsTheRest() async throws {
        let (server, socket, sid) = try await connectedServer()
        var waiters = CommitWaiters(position: Offset(2))
        for (ackID, offset) in [(1, 5), (2, 3), (3, 9), (4, 4), (5, 12)] as [(UInt64, UInt64)] {
            let answer = PendingAnswer(socket: socket, ackID: ackID, event: "send-group-message", messageID: nil)
            waiters.answer(answer, when: Offset(offset), server: server)
        }
        // Nothing was sent at registration: every offset was ahead of the position.
        #expect(await ackIDs(server, socket, sid, token: "none") == [])
        let first = waiters.settle(below: Offset(6))
        #expect(first.acks.map(\.id) == [2, 4, 1] && first.acks.allSatisfy { $0.socket == socket } && first.ready.isEmpty)
        #expect(waiters.settle(below: Offset(10)).acks.map(\.id) == [3])
        #expect(waiters.settle(below: Offset(10)).acks.isEmpty)
        // One already settled (below 10) is answered at once; the last waits for its offset.
        waiters.answer(PendingAnswer(socket: socket, ackID: 6, event: "send-group-message", messageID: nil),
                       when: Offset(7), server: server)
        #expect(await ackIDs(server, socket, sid, token: "at-once") == [6])
        #expect(waiters.settle(below: Offset(13)).acks.map(\.id) == [5])
    }

    /// Expiry by age: what waited since before the cutoff fails (`unavailable`, as an error
    /// event with the ack id), later registrations stay, and no cutoff expires everything.
    @Test func expiryTakesWhatWaitedSinceBeforeTheCutoff() async throws {
        let (server, socket, sid) = try await connectedServer()
        var waiters = CommitWaiters(position: Offset(0))
        waiters.answer(PendingAnswer(socket: socket, ackID: 1, event: "send-group-message", messageID: nil), when: Offset(5), server: server)
        #expect(waiters.expire(waitingSince: .now - .seconds(60), reason: "old", server: server).isEmpty)
        #expect(await ackIDs(server, socket, sid, token: "none yet") == [])
        _ = waiters.expire(waitingSince: .now + .seconds(1), reason: "timed out", server: server)
        #expect(await ackIDs(server, socket, sid, token: "expired") == [1])
        #expect(waiters.settle(below: Offset(10)).acks.isEmpty, "an expired answer is not sent again")
        waiters.answer(PendingAnswer(socket: socket, ackID: 2, event: "send-group-message", messageID: nil), when: Offset(20), server: server)
        _ = waiters.expire(waitingSince: nil, reason: "stopping", server: server)
        #expect(await ackIDs(server, socket, sid, token: "all") == [2])
    }

    /// A send's ack is written straight into its text (`PendingAnswer.ack`): it must be the
    /// packet the other commands' acks are built as (`ChatWire.success` of `ackFields`).
    @Test(arguments: [Offset(12_345) as Offset?, nil])
    func aSendsAckIsTheAckTheChatWireBuilds(_ messageID: Offset?) async throws {
        let (_, socket, _) = try await connectedServer()
        let answer = PendingAnswer(socket: socket, ackID: 9, event: "send-group-message", messageID: messageID)
        let command = ChatService.Command.send(RoomID("general") ?? .none, text: "hi", createdMs: 0, createdText: nil, clientID: "c")
        let fields = ChatWire.ackFields(of: command, ChatService.Performed(messageID: messageID))
        let built = SocketPacket(.ack, namespace: socket.namespace, id: 9, data: .array([ChatWire.success(fields)]))
        #expect(answer.ack?.text == built.encode().text)
        #expect(PendingAnswer(socket: socket, ackID: nil, event: "send-group-message", messageID: messageID).ack == nil)
    }

    /// The acks a settle returns say that the send succeeded, in the ack the client reads.
    @Test func settledAcksCarryTheSendsFields() async throws {
        let (server, socket, sid) = try await connectedServer()
        var waiters = CommitWaiters(position: Offset(0))
        waiters.answer(PendingAnswer(socket: socket, ackID: 7, event: "send-group-message", messageID: Offset(3)),
                       when: Offset(3), server: server)
        let settled = waiters.settle(below: Offset(4))
        server.ack(settled.acks)
        server.ack(socket, id: Self.sentinel, [])
        guard case .body(let body) = await server.poll(sid: sid, token: "acks").0 else {
            Issue.record("no poll body")
            return
        }
        #expect(body.contains("437[{\"ok\":true,\"id\":3}]"))
    }
}
