import Logging
import SocketIO
import Testing

@testable import ChatServer

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

    @Test func handshakesBeyondSessionsMaxAreRefused() {
        let server = server { $0.sessionsMax = 2 }
        for _ in 0..<2 {
            guard case .opened = server.handshake(transport: .polling) else {
                Issue.record("a handshake under the limit was refused")
                return
            }
        }
        guard case .full = server.handshake(transport: .polling) else {
            Issue.record("the third handshake was accepted")
            return
        }
        #expect(server.sessionCount == 2)
    }

    /// A poll whose request is cancelled before the server holds it (its client went away
    /// at once) must not be held: nothing would release it until the next packet.
    @Test(.timeLimit(.minutes(1))) func aPollFromAnAlreadyCancelledRequestIsNotHeld() async throws {
        let server = server()
        guard case .opened(let sid, _) = server.handshake(transport: .polling) else {
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

    /// The three ways to emit reach the socket's queue as the same kind of text packet.
    @Test func emitsFromValuesWritersAndRelaysAreQueued() async throws {
        let server = server()
        let queue = OutboundQueue<SocketIOServer.OutboundItem>(capacity: 16)
        let sid = try #require(server.attachWebSocket(sid: nil, queue: queue)?.sid)
        await server.perform(server.frame(sid: sid, packet: .message("0"), probe: false).calls)
        let socket = SocketRef(engineID: sid, namespace: "/", socketID: try #require(server.connectedSocketID(sid: sid, namespace: "/")))
        // Relaying received text is SocketSessionTests' business; here, arguments from values.
        let arguments: SocketEventArguments = [.object([("k", .string("v"))]), .number(2)]
        server.emit(socket, event: "values", [.string("v")])
        server.emit(socket, event: "written") { $0.string("w") }
        server.emit(socket, event: "relayed", relaying: arguments)
        var texts: [String] = []
        queue.finish()
        while let items = await queue.next() {
            for item in items { if case .packet(let packet) = item, let text = packet.textFrame { texts.append(text) } }
        }
        #expect(Array(texts.suffix(3)) == [#"42["values","v"]"#, #"42["written","w"]"#, #"42["relayed",{"k":"v"},2]"#])
    }

    @Test func aWebSocketWhoseQueueOverflowsIsClosed() async throws {
        let server = server()
        // A queue of two frames that nobody drains: the open packet, then the connect reply and
        // the auth-less socket's traffic overflow it.
        let queue = OutboundQueue<SocketIOServer.OutboundItem>(capacity: 2)
        let attached = server.attachWebSocket(sid: nil, queue: queue)
        let sid = try #require(attached?.sid)
        let (_, connectCalls) = server.frame(sid: sid, packet: .message("0"), probe: false)
        await server.perform(connectCalls)
        let socketID = try #require(server.connectedSocketID(sid: sid, namespace: "/"))
        let socket = SocketRef(engineID: sid, namespace: "/", socketID: socketID)
        for n in 0..<5 { server.emit(socket, event: "flood", [.number(Double(n))]) }
        // The queue was finished when a frame did not fit: reading it ends after what fitted.
        var received: [EnginePacket] = []
        while let items = await queue.next() {
            for item in items { if case .packet(let frame) = item { received.append(frame) } }
        }
        #expect(received.count == 2)
        #expect(received.first?.type == .open)
    }
}

@Suite struct OutboundQueueTests {
    @Test func theWriterTakesEverythingQueuedAtOnceWithinTheCapacity() async {
        let queue = OutboundQueue<Int>(capacity: 3)
        #expect(queue.yield(1) == .enqueued)
        #expect(queue.yield(2) == .enqueued)
        #expect(queue.yield(3) == .enqueued)
        #expect(queue.yield(4) == .dropped)
        #expect(await queue.next() == [1, 2, 3])
        // Taking a batch makes room again.
        #expect(queue.yield(5) == .enqueued)
        queue.finish()
        #expect(queue.yield(6) == .terminated)
        // What was queued before the end is still taken, then the queue ends.
        #expect(await queue.next() == [5])
        #expect(await queue.next() == nil)
    }

    @Test func aWaitingWriterIsWokenByAnItemOrTheEnd() async {
        let queue = OutboundQueue<Int>(capacity: 8)
        async let first = queue.next()
        // Give the writer time to wait (it may also find the item already queued: both are right).
        try? await Task.sleep(for: .milliseconds(20))
        #expect(queue.yield(7) == .enqueued)
        #expect(await first == [7])
        async let second = queue.next()
        try? await Task.sleep(for: .milliseconds(20))
        queue.finish()
        #expect(await second == nil)
    }

    @Test func cancellingTheWaitingWriterEndsTheQueue() async {
        let queue = OutboundQueue<Int>(capacity: 8)
        let writer = Task { await queue.next() }
        try? await Task.sleep(for: .milliseconds(20))
        writer.cancel()
        #expect(await writer.value == nil)
        #expect(queue.yield(1) == .terminated)
    }
}
