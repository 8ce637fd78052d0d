import Logging
import SocketIO
import Synchronization
import Testing
@testable import HummingbirdSocketIO

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
