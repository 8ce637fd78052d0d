import Logging
import SocketIO
import Synchronization
import Testing

@testable import HummingbirdSocketIO

/// Limits of the server actor, exercised without sockets.
@Suite struct SocketIOServerTests {
    struct Silent: SocketIOHandler {
        func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async {}
    }

    func server(_ change: (inout SocketIOServer.Configuration) -> Void = { _ in }) -> SocketIOServer {
        var configuration = SocketIOServer.Configuration()
        change(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return SocketIOServer(configuration: configuration, handler: Silent(), logger: logger)
    }

    /// Connects a session's default namespace (the handler authorizes it).
    func connect(_ server: SocketIOServer, _ sid: String) async {
        let (ok, known, calls) = server.post(sid: sid, body: Array("40".utf8))
        #expect(ok && known)
        await server.perform(calls)
    }

    @Test func handshakesBeyondSessionsMaxOfConnectedSessionsAreRefused() async {
        let server = server { $0.sessionsMax = 2 }
        for _ in 0..<2 {
            guard case .opened(let sid, _) = server.handshake(transport: .polling, client: "a") else {
                Issue.record("a handshake under the limit was refused")
                return
            }
            await connect(server, sid)
        }
        guard case .full = server.handshake(transport: .polling, client: "b") else {
            Issue.record("the third handshake was accepted")
            return
        }
        #expect(server.sessionCount == 2)
    }

    /// 10,000 anonymous handshakes once filled the session cap: clients with tokens got 503.
    @Test func anonymousHandshakesPastTheirCapCloseTheOldestAndNeverCountAgainstConnectedOnes() async {
        let server = server {
            $0.sessionsMax = 2
            $0.anonymousSessionsMax = 3
        }
        var opened: [String] = []
        for n in 0..<10 {
            guard case .opened(let sid, _) = server.handshake(transport: .polling, client: "attacker\(n % 5)") else {
                Issue.record("an anonymous handshake was refused")
                return
            }
            opened.append(sid)
        }
        #expect(server.sessionCount == 3, "the oldest anonymous sessions were closed for newer ones")
        // A real client's handshake gets in, connects, and counts against sessionsMax alone.
        guard case .opened(let sid, _) = server.handshake(transport: .polling, client: "client") else {
            Issue.record("the client's handshake was refused")
            return
        }
        await connect(server, sid)
        #expect(server.connectedSocketID(sid: sid, namespace: "/") != nil)
        for n in 0..<10 { _ = server.handshake(transport: .polling, client: "attacker\(n)") }
        #expect(server.connectedSocketID(sid: sid, namespace: "/") != nil, "a connected session is never closed for anonymous ones")
        #expect(server.sessionCount == 4)
    }

    @Test func anonymousHandshakesFromOneAddressPastItsCapAreRefused() {
        let server = server { $0.anonymousSessionsPerAddressMax = 2 }
        for _ in 0..<2 {
            guard case .opened = server.handshake(transport: .polling, client: "a") else {
                Issue.record("a handshake under the per-address cap was refused")
                return
            }
        }
        guard case .full = server.handshake(transport: .polling, client: "a") else {
            Issue.record("a third anonymous handshake from one address was accepted")
            return
        }
        guard case .opened = server.handshake(transport: .polling, client: "b") else {
            Issue.record("another address was refused")
            return
        }
    }

    /// A poll whose request is cancelled before the server holds it (its client went away
    /// at once) must not be held: nothing would release it until the next packet.
    @Test(.timeLimit(.minutes(1))) func aPollFromAnAlreadyCancelledRequestIsNotHeld() async throws {
        let server = server()
        guard case .opened(let sid, _) = server.handshake(transport: .polling, client: "test") else {
            Issue.record("the handshake was refused")
            return
        }
        let cancelled = Task { () -> SocketIOServer.PollResult in
            withUnsafeCurrentTask { $0?.cancel() }
            return await server.poll(sid: sid, token: "first").0
        }
        guard case .body(let body) = await cancelled.value else {
            Issue.record("the cancelled poll did not end with a body")
            return
        }
        #expect(body == "6")  // a noop
        // The session is intact and takes the next poll (a second held poll would close it).
        let next = Task { await server.poll(sid: sid, token: "second").0 }
        try await Task.sleep(for: .milliseconds(50))
        #expect(server.sessionCount == 1)
        server.pollAbandoned(sid: sid, token: "second")
        guard case .body = await next.value else {
            Issue.record("the next poll was not released")
            return
        }
    }

    /// A client sends its close and a poll at once; the close may be handled first. That poll
    /// gets the noop the close owes it (as if it had been waiting), the next one 400.
    @Test func aPollArrivingJustAfterTheClientsCloseGetsANoop() async throws {
        let server = server()
        guard case .opened(let sid, _) = server.handshake(transport: .polling, client: "test") else {
            Issue.record("the handshake was refused")
            return
        }
        let (ok, known, _) = server.post(sid: sid, body: Array("1".utf8))
        #expect(ok && known)
        #expect(server.sessionCount == 0)
        guard case .body(let body) = await server.poll(sid: sid, token: "late").0 else {
            Issue.record("the poll sent with the close was refused")
            return
        }
        #expect(body == "6")
        guard case .unknownSession = await server.poll(sid: sid, token: "later").0 else {
            Issue.record("a second poll after the close was answered")
            return
        }
        // When a poll was waiting, the close answers it, and nothing is owed afterwards.
        guard case .opened(let other, _) = server.handshake(transport: .polling, client: "test") else {
            Issue.record("the handshake was refused")
            return
        }
        let held = Task { await server.poll(sid: other, token: "held").0 }
        try await Task.sleep(for: .milliseconds(50))
        _ = server.post(sid: other, body: Array("1".utf8))
        guard case .body(let noop) = await held.value else {
            Issue.record("the waiting poll was not answered")
            return
        }
        #expect(noop == "6")
        guard case .unknownSession = await server.poll(sid: other, token: "after").0 else {
            Issue.record("a poll after the close that answered the waiting one was answered")
            return
        }
        // A session that ended otherwise owes no poll anything.
        guard case .unknownSession = await server.poll(sid: "never-was", token: "x").0 else {
            Issue.record("a poll for an unknown session was answered")
            return
        }
    }

    /// The three ways to emit reach the socket's queue as the same kind of text packet.
    /// A WebSocket session on `server` whose socket joined the main namespace, and its queue.
    func connectedWebSocket(_ server: SocketIOServer, queueCapacity: Int) async throws -> (OutboundQueue<SocketIOServer.OutboundItem>, SocketRef) {
        let queue = OutboundQueue<SocketIOServer.OutboundItem>(capacity: queueCapacity)
        let sid = try #require(server.attachWebSocket(sid: nil, client: "test", queue: queue)?.sid)
        await server.perform(server.frame(sid: sid, packet: .message("0"), probe: false).calls)
        return (queue, SocketRef(engineID: sid, namespace: "/", socketID: try #require(server.connectedSocketID(sid: sid, namespace: "/"))))
    }

    @Test func emitsFromValuesWritersAndRelaysAreQueued() async throws {
        let server = server()
        let (queue, socket) = try await connectedWebSocket(server, queueCapacity: 16)
        // Relaying received text is SocketSessionTests' business; here, arguments from values.
        let arguments: SocketEventArguments = [.object([("k", .string("v"))]), .number(2)]
        server.emit(socket, event: "values", [.string("v")])
        server.emit(socket, event: "written") { $0.string("w") }
        server.emit(socket, event: "relayed", relaying: arguments)
        var texts: [String] = []
        guard case .items(let items) = queue.take() else {
            Issue.record("nothing was queued")
            return
        }
        for item in items { if case .packet(let packet) = item, let text = packet.textFrame { texts.append(text) } }
        #expect(Array(texts.suffix(3)) == [#"42["values","v"]"#, #"42["written","w"]"#, #"42["relayed",{"k":"v"},2]"#])
    }

    /// Acks and broadcast events go straight to a WebSocket's queue, in the order sent: acks as
    /// packets, events as their shared frame; a socket no longer connected gets nothing, and a
    /// queue that overflows with acks drops its client as events do.
    @Test func acksAndEventsReachAWebSocketsQueueInOrder() async throws {
        let server = server()
        let (queue, socket) = try await connectedWebSocket(server, queueCapacity: 8)
        _ = queue.take()  // the open packet and the connect reply
        let event = EncodedEvent("said", arguments: { $0.string("hi") })
        server.send([(event: event, sockets: [socket])])
        server.ack([EncodedAck(socket, id: 7, arguments: { $0.bool(true) })])
        server.send([(event: event, sockets: [socket])])
        let stale = SocketRef(engineID: socket.engineID, namespace: "/", socketID: "not-this-one")
        server.ack([EncodedAck(stale, id: 8, arguments: { $0.bool(true) })])
        guard case .items(let items) = queue.take() else {
            Issue.record("nothing was queued")
            return
        }
        let texts = items.map { item -> String in
            switch item {
            case .packet(let packet): "packet " + (packet.textFrame ?? "")
            case .frame(let frame): "frame " + String(decoding: frame.bytes.readableBytesView.dropFirst(frame.headerBytes), as: UTF8.self)
            case .barrier: "barrier"
            }
        }
        #expect(texts == [#"frame 42["said","hi"]"#, "packet 437[true]", #"frame 42["said","hi"]"#])

        server.ack((0..<9).map { EncodedAck(socket, id: UInt64($0), arguments: { $0.bool(true) }) })
        #expect(queue.isAborted)
        #expect(server.sessionCount == 0)
    }

    @Test func aWebSocketWhoseQueueOverflowsIsDroppedAndItsSessionClosed() async throws {
        let server = server()
        // A queue of two frames that nobody drains: the open packet, then the connect reply and
        // the auth-less socket's traffic overflow it.
        let queue = OutboundQueue<SocketIOServer.OutboundItem>(capacity: 2)
        let attached = server.attachWebSocket(sid: nil, client: "test", queue: queue)
        let sid = try #require(attached?.sid)
        let (_, connectCalls) = server.frame(sid: sid, packet: .message("0"), probe: false)
        await server.perform(connectCalls)
        let socketID = try #require(server.connectedSocketID(sid: sid, namespace: "/"))
        let socket = SocketRef(engineID: sid, namespace: "/", socketID: socketID)
        #expect(server.sessionCount == 1)
        for n in 0..<5 { server.emit(socket, event: "flood", [.number(Double(n))]) }
        // A frame did not fit: the queue is aborted (its writer drops the connection without
        // waiting for a socket that may never drain) and the session is closed at once.
        #expect(queue.isAborted)
        guard case .finished = queue.take() else {
            Issue.record("the aborted queue still held items")
            return
        }
        #expect(server.sessionCount == 0)
        #expect(server.connectedSocketID(sid: sid, namespace: "/") == nil)
    }
}
