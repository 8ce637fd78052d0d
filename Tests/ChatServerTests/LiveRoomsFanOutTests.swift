import ChatModel
import Journal
import Logging
import SocketIO
import Testing

@testable import ChatServer
@testable import HummingbirdSocketIO

/// The tailer's fan-out: a batch's events reach every subscriber in offset order, several
/// events per acquisition of the Socket.IO server's lock (`LiveRooms.deliveriesPerLockMax`),
/// and a send's ack only after its event.
@Suite(.timeLimit(.minutes(1))) struct LiveRoomsFanOutTests {
    @Test func aBatchOverTheLockBoundReachesEverySubscriberInOrderAndTheAckComesAfterItsEvent() async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let helper = CommitWaitersTests()
        let handler = CommitWaitersTests.Connected()
        let server = SocketIOServer(configuration: .init(), handler: handler, logger: logger)
        let live = LiveRooms(rooms: RoomState(), position: .zero, limits: ChatServerLimits(), recovery: false)
        let room = try #require(RoomID("plans"))
        let alice = try #require(UserID("alice"))
        // Three polling sockets in the room: 400 events each, 1,200 sends, over the bound.
        var sockets: [(SocketRef, String)] = []
        for _ in 0..<3 {
            let (socket, sid) = try await helper.connectedSocket(server, handler)
            #expect(live.connect(socket, user: alice))
            guard case .subscribed = live.subscribe(socket, to: [room], cursor: nil, server: server) else {
                Issue.record("not subscribed")
                return
            }
            sockets.append((socket, sid))
        }
        let count = 400
        #expect(count * sockets.count > LiveRooms.deliveriesPerLockMax)
        // The first socket's send is the last event of the batch; its ack waits for it.
        live.answer(PendingAnswer(socket: sockets[0].0, ackID: 7, event: "send-group-message", messageID: nil),
                    when: Offset(UInt64(count - 1)), server: server)
        let events = (0..<count).map { index in
            (Offset(UInt64(index)), ChatEvent(timestampMs: 0, actor: alice, room: room,
                                              body: .messageSent(clientMessageID: "m\(index)", text: "text \(index)", clientCreatedMs: 0)))
        }
        live.apply(events, end: Offset(UInt64(count)), server: server)
        for (number, (_, sid)) in sockets.enumerated() {
            var packets: [Substring] = []
            var poll = 0
            // Polls until one brings only the sentinel ack queued before it (so none waits).
            while poll < 200 {
                server.ack(sockets[number].0, id: CommitWaitersTests.sentinel, [])
                guard case .body(let body) = await server.poll(sid: sid, token: "poll-\(poll)").0 else { break }
                let got = body.split(separator: "\u{1E}").filter { $0.hasPrefix("42") || ($0.hasPrefix("43") && !$0.hasPrefix("43\(CommitWaitersTests.sentinel)")) }
                if got.isEmpty, body.contains("43\(CommitWaitersTests.sentinel)") { break }
                packets += got
                poll += 1
            }
            let texts = packets.compactMap { packet in packet.range(of: "text ").map { packet[$0.upperBound...].prefix { $0.isNumber } } }
            #expect(texts == (0..<count).map { Substring("\($0)") }, "socket \(number): events out of order or missing")
            if number == 0 {
                #expect(packets.last?.hasPrefix("437") == true, "the ack comes after the last event")
            } else {
                #expect(!packets.contains { $0.hasPrefix("43") })
            }
        }
    }
}
