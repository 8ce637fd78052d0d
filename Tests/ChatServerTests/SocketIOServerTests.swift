import Logging
import SocketIO
import Testing

@testable import ChatServer

/// Limits of the server actor, exercised without sockets.
@Suite struct SocketIOServerTests {
    struct Silent: SocketIOHandler {
        func event(_ socket: SocketRef, name: String, arguments: [JSONValue], ackID: UInt64?, server: SocketIOServer) async {}
    }

    func server(_ change: (inout SocketIOServer.Configuration) -> Void = { _ in }) -> SocketIOServer {
        var configuration = SocketIOServer.Configuration()
        change(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return SocketIOServer(configuration: configuration, handler: Silent(), logger: logger)
    }

    @Test func handshakesBeyondSessionsMaxAreRefused() async {
        let server = server { $0.sessionsMax = 2 }
        for _ in 0..<2 {
            guard case .opened = await server.handshake(transport: .polling) else {
                Issue.record("a handshake under the limit was refused")
                return
            }
        }
        guard case .full = await server.handshake(transport: .polling) else {
            Issue.record("the third handshake was accepted")
            return
        }
        #expect(await server.sessionCount == 2)
    }

    @Test func aWebSocketWhoseQueueOverflowsIsClosed() async throws {
        let server = server()
        // A queue of two frames that nobody drains: the open packet, then the connect reply and
        // the auth-less socket's traffic overflow it.
        let (frames, continuation) = AsyncStream<SocketIOServer.OutboundItem>.makeStream(bufferingPolicy: .bufferingOldest(2))
        let attached = await server.attachWebSocket(sid: nil, continuation: continuation)
        let sid = try #require(attached?.sid)
        let (_, connectCalls) = await server.frame(sid: sid, packet: .message("0"), probe: false)
        await server.perform(connectCalls)
        let socketID = try #require(await server.connectedSocketID(sid: sid, namespace: "/"))
        let socket = SocketRef(engineID: sid, namespace: "/", socketID: socketID)
        for n in 0..<5 { await server.emit(socket, event: "flood", [.number(Double(n))]) }
        // The stream was finished when a frame did not fit: reading it ends after what fitted.
        var received: [EnginePacket] = []
        for await item in frames { if case .packet(let frame) = item { received.append(frame) } }
        #expect(received.count == 2)
        #expect(received.first?.type == .open)
    }
}
