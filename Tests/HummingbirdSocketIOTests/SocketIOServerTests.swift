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
    @Test func emitsFromValuesWritersAndRelaysAreQueued() async throws {
        let server = server()
        let queue = OutboundQueue<SocketIOServer.OutboundItem>(capacity: 16)
        let sid = try #require(server.attachWebSocket(sid: nil, client: "test", queue: queue)?.sid)
        await server.perform(server.frame(sid: sid, packet: .message("0"), probe: false).calls)
        let socket = SocketRef(engineID: sid, namespace: "/", socketID: try #require(server.connectedSocketID(sid: sid, namespace: "/")))
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

@Suite struct OutboundQueueTests {
    @Test func abortWakesAWriterEvenWithAWakeUpPending() {
        let queue = OutboundQueue<Int>(capacity: 3)
        let wakes = Mutex(0)
        queue.setWaker { wakes.withLock { $0 += 1 } }
        #expect(queue.yield(1) == .enqueued)
        #expect(wakes.withLock { $0 } == 1)
        // The writer was woken but did not take (its socket was not writable): a second item
        // does not wake it again, an abort does.
        #expect(queue.yield(2) == .enqueued)
        #expect(wakes.withLock { $0 } == 1)
        queue.abort()
        #expect(wakes.withLock { $0 } == 2)
        #expect(queue.isAborted)
        #expect(queue.yield(3) == .terminated)
        guard case .finished = queue.take() else {
            Issue.record("an aborted queue hands out nothing")
            return
        }
    }

    @Test func theWriterTakesEverythingQueuedAtOnceWithinTheCapacity() {
        let queue = OutboundQueue<Int>(capacity: 3)
        #expect(queue.yield(1) == .enqueued)
        #expect(queue.yield(2) == .enqueued)
        #expect(queue.yield(3) == .enqueued)
        #expect(queue.yield(4) == .dropped)
        guard case .items(let first) = queue.take() else {
            Issue.record("nothing taken")
            return
        }
        #expect(first == [1, 2, 3])
        // Taking a batch makes room again.
        #expect(queue.yield(5) == .enqueued)
        queue.finish()
        #expect(queue.yield(6) == .terminated)
        // What was queued before the end is still taken, then the queue ends.
        guard case .items(let last) = queue.take(), case .finished = queue.take() else {
            Issue.record("the end did not follow the last items")
            return
        }
        #expect(last == [5])
    }
}

@Suite struct OutboundQueueBytesTests {
    /// 1,024 frames of 1.6 MB each once fitted a queue bounded by count alone.
    @Test func aQueueIsBoundedInBytesButTakesOneLargeItemWhenEmpty() {
        let queue = OutboundQueue<Int>(capacity: 100, bytesCapacity: 1_000) { $0 }
        #expect(queue.yield(5_000) == .enqueued, "one large reply reaches an empty queue")
        #expect(queue.yield(1) == .dropped)
        _ = queue.take()
        #expect(queue.yield(600) == .enqueued)
        #expect(queue.yield(400) == .enqueued)
        #expect(queue.yield(1) == .dropped)
    }

    @Test func queuesShareTheProcessBudgetAndGiveItBackWhenTakenOrAborted() {
        let budget = OutboundBudget(limit: 1_000)
        let first = OutboundQueue<Int>(capacity: 100, bytesCapacity: 800, budget: budget) { $0 }
        let second = OutboundQueue<Int>(capacity: 100, bytesCapacity: 800, budget: budget) { $0 }
        #expect(first.yield(700) == .enqueued)
        #expect(second.yield(400) == .dropped, "the budget is spent")
        #expect(second.yield(300) == .enqueued)
        #expect(budget.bytes == 1_000)
        _ = first.take()
        #expect(budget.bytes == 300)
        second.abort()
        #expect(budget.bytes == 0)
    }
}

/// The event-loop writer's side of `OutboundQueue`: woken once per burst, takes without waiting.
@Suite struct OutboundQueueWakerTests {
    final class Counter: Sendable {
        let value = Mutex(0)
        func increment() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    @Test func theWakerIsCalledOncePerBurstUntilTheWriterTakes() {
        let queue = OutboundQueue<Int>(capacity: 8)
        let wakes = Counter()
        queue.setWaker { wakes.increment() }
        #expect(wakes.count == 0)  // nothing to take yet
        #expect(queue.yield(1) == .enqueued)
        #expect(queue.yield(2) == .enqueued)
        #expect(wakes.count == 1)
        guard case .items(let first) = queue.take() else {
            Issue.record("nothing taken")
            return
        }
        #expect(first == [1, 2])
        guard case .empty = queue.take() else {
            Issue.record("an empty queue gave something")
            return
        }
        #expect(queue.yield(3) == .enqueued)
        #expect(wakes.count == 2)
        queue.finish()
        #expect(wakes.count == 2)  // still unanswered: no second call
        guard case .items(let second) = queue.take(), case .finished = queue.take() else {
            Issue.record("the end was not reported after the last items")
            return
        }
        #expect(second == [3])
    }

    @Test func aWakerSetLateIsCalledAtOnceForWhatWaits() {
        let queue = OutboundQueue<Int>(capacity: 2)
        #expect(queue.yield(1) == .enqueued)
        #expect(queue.yield(2) == .enqueued)
        #expect(queue.yield(3) == .dropped)
        let wakes = Counter()
        queue.setWaker { wakes.increment() }
        #expect(wakes.count == 1)
        queue.finish()
        #expect(wakes.count == 1)
        guard case .items(let items) = queue.take() else {
            Issue.record("nothing taken")
            return
        }
        #expect(items == [1, 2])
        #expect(queue.yield(4) == .terminated)
    }
}

/// The inbound side of `WebSocketConnection`: what the event loop hands the connection's task.
@Suite struct WebSocketInboundTests {
    @Test func readingPausesPastTheByteLimitAndResumesWhenTaken() async {
        let inbound = WebSocketConnection.Inbound(pauseAtBytes: 10)
        #expect(inbound.append(.text("12345")) == false)
        #expect(inbound.append(.text("67890")) == false)  // exactly at the limit
        #expect(inbound.append(.binary([1])) == true)  // over it: pause
        guard case .messages(let messages, let resume) = await inbound.take() else {
            Issue.record("no messages")
            return
        }
        #expect(messages == [.text("12345"), .text("67890"), .binary([1])])
        #expect(resume)
        #expect(inbound.append(.text("a")) == false)  // the count starts again
        inbound.end(nil)
        guard case .messages(let last, false) = await inbound.take(), case .end(nil) = await inbound.take() else {
            Issue.record("the end did not follow the last message")
            return
        }
        #expect(last == [.text("a")])
    }

    @Test func aWaitingTaskGetsTheNextMessageOrTheViolation() async {
        let inbound = WebSocketConnection.Inbound(pauseAtBytes: 1 << 20)
        async let first = inbound.take()
        try? await Task.sleep(for: .milliseconds(20))
        _ = inbound.append(.text("x"))
        guard case .messages([.text("x")], _) = await first else {
            Issue.record("the waiting task did not get the message")
            return
        }
        async let second = inbound.take()
        try? await Task.sleep(for: .milliseconds(20))
        inbound.end(WebSocketConnection.ProtocolViolation(code: .protocolError, reason: "test"))
        guard case .end(let failure?) = await second, let violation = failure as? WebSocketConnection.ProtocolViolation else {
            Issue.record("the waiting task did not get the violation")
            return
        }
        #expect(violation.code == .protocolError)
        #expect(inbound.append(.text("late")) == false)
    }
}

/// Polling POSTs are answered once parsed; their handlers run after, in order, on the
/// session's worker (`SocketIOServer.run`), as the reference server does.
@Suite struct PostedWorkTests {
    /// Records events; the event named "block" waits until `release` is signalled.
    final class Gated: SocketIOHandler {
        let seen = Mutex<[String]>([])
        let gate = AsyncStream<Void>.makeStream()
        /// Set once the "block" event runs (its worker took it and waits).
        let blocked = Mutex(false)

        func event(_ socket: SocketRef, name: String, arguments: SocketEventArguments, ackID: UInt64?, server: SocketIOServer) async {
            if name == "block" {
                blocked.withLock { $0 = true }
                for await _ in gate.stream { break }
            }
            seen.withLock { $0.append(name) }
        }

        func connected(_ socket: SocketRef, server: SocketIOServer) async {
            seen.withLock { $0.append("connected") }
        }

        /// Waits (up to 2 s) until `count` names are seen.
        func waitFor(_ count: Int) async throws {
            for _ in 0..<400 where seen.withLock({ $0.count }) < count { try await Task.sleep(for: .milliseconds(5)) }
        }
    }

    /// A running server with one connected polling session; `post` parses a payload and queues
    /// its calls as the endpoint does.
    func withSession(_ body: (SocketIOServer, Gated, String, @escaping @Sendable (String) async -> Void) async throws -> Void) async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let handler = Gated()
        let server = SocketIOServer(configuration: .init(), handler: handler, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            guard case .opened(let sid, _) = server.handshake(transport: .polling, client: "test") else {
                Issue.record("the handshake was refused")
                return
            }
            let post: @Sendable (String) async -> Void = { text in
                let (ok, known, calls) = server.post(sid: sid, body: Array(text.utf8))
                #expect(ok && known)
                await server.enqueuePosted(sid: sid, calls)
            }
            await post("40")
            // A client emits once its CONNECT is answered (events before it are not the socket's).
            try await handler.waitFor(1)
            #expect(handler.seen.withLock { $0 } == ["connected"])
            handler.seen.withLock { $0.removeAll() }
            try await body(server, handler, sid, post)
            group.cancelAll()
        }
    }

    @Test(.timeLimit(.minutes(1))) func aPostIsAnsweredBeforeItsHandlerEndsAndHandlersKeepTheirOrder() async throws {
        try await withSession { _, handler, _, post in
            // Each returns although "block" is still running: nothing waits for the handlers.
            await post(#"42["block"]"#)
            await post(#"42["second"]"#)
            await post(#"42["third"]"#)
            try await Task.sleep(for: .milliseconds(50))
            #expect(handler.seen.withLock { $0 }.isEmpty, "nothing passes the blocked handler")
            handler.gate.continuation.yield()
            try await handler.waitFor(3)
            #expect(handler.seen.withLock { $0 } == ["block", "second", "third"])
        }
    }

    /// After an upgrade, a WebSocket frame's events wait behind what POSTs delivered before it;
    /// once that is done, frames are performed at once.
    @Test(.timeLimit(.minutes(1))) func framesWaitBehindPostedWorkThenGoStraightThrough() async throws {
        try await withSession { server, handler, sid, post in
            await post(#"42["block"]"#)
            await post(#"42["posted"]"#)
            let frame = server.post(sid: sid, body: Array(#"42["frame"]"#.utf8)).calls
            #expect(await server.performAfterPosted(sid: sid, frame), "queued behind the posted work")
            handler.gate.continuation.yield()
            try await handler.waitFor(3)
            #expect(handler.seen.withLock { $0 } == ["block", "posted", "frame"])
            for _ in 0..<400 where await server.performAfterPosted(sid: sid, server.post(sid: sid, body: Array(#"42["late"]"#.utf8)).calls) {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(handler.seen.withLock { $0 }.last == "late", "performed at once, the worker gone")
        }
    }

    /// A client POSTing faster than its handlers run is held once `postsPendingMax` payloads wait.
    @Test(.timeLimit(.minutes(1))) func postsBeyondTheBoundWaitForTheWorker() async throws {
        try await withSession { _, handler, _, post in
            await post(#"42["block"]"#)
            // The worker has taken it and waits: what is posted now queues behind it.
            for _ in 0..<400 where !handler.blocked.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
            for index in 0..<SocketIOServer.postsPendingMax { await post(#"42["e\#(index)"]"#) }
            final class Flag: Sendable { let value = Mutex(false) }
            let returned = Flag()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    await post(#"42["over"]"#)
                    returned.value.withLock { $0 = true }
                }
                try await Task.sleep(for: .milliseconds(100))
                #expect(!returned.value.withLock { $0 }, "the POST over the bound is held")
                handler.gate.continuation.yield()
                try await group.waitForAll()
            }
            #expect(returned.value.withLock { $0 })
            try await handler.waitFor(SocketIOServer.postsPendingMax + 2)
            #expect(handler.seen.withLock { $0 } == ["block"] + (0..<SocketIOServer.postsPendingMax).map { "e\($0)" } + ["over"])
        }
    }
}
