import SocketIO
import Synchronization

/// A session's WebSocket: its frames become the server's work, in order.
final class WebSocketSession: WebSocketReceiver {
    private struct Progress {
        /// Still upgrading from polling.
        var probe: Bool
        /// Only a session that began on polling can have POSTed work queued ahead of its
        /// frames; once it has upgraded and none is left, its frames go straight to `perform`.
        var behindPosts: Bool
    }

    let server: SocketIOServer
    let sid: String
    let queue: OutboundQueue<SocketIOServer.OutboundItem>
    // Touched by one receiver call at a time; the lock is for the compiler's sake (and free).
    private let progress: Mutex<Progress>

    init(server: SocketIOServer, sid: String, queue: OutboundQueue<SocketIOServer.OutboundItem>, probe: Bool) {
        self.server = server
        self.sid = sid
        self.queue = queue
        self.progress = Mutex(Progress(probe: probe, behindPosts: probe))
    }

    func receive(_ messages: [WebSocketConnection.Message]) async {
        var progress = self.progress.withLock { $0 }
        defer { self.progress.withLock { $0 = progress } }
        for message in messages {
            let packet: EnginePacket
            switch message {
            case .text(let text):
                guard let decoded = try? EnginePacket.decode(textFrame: text) else {
                    // Not an Engine.IO packet: the session ends. Finishing the queue lets the
                    // writer send what is queued, then the close frame; the client's answer (or
                    // the close timeout) then ends the connection, and frames until then find
                    // no session.
                    let calls = server.websocketClosed(sid: sid, probe: false)
                    await server.perform(calls)
                    queue.finish()
                    continue
                }
                packet = decoded
            case .binary(let bytes):
                packet = EnginePacket.decode(binaryFrame: bytes)
            }
            let (stillProbing, calls) = server.frame(sid: sid, packet: packet, probe: progress.probe)
            progress.probe = stillProbing
            if progress.behindPosts {
                progress.behindPosts = await server.performAfterPosted(sid: sid, calls) || progress.probe
            } else {
                await server.perform(calls)
            }
        }
    }

    func ended(_ failure: (any Error)?) async {
        if let failure {
            server.logger.debug("websocket closed", metadata: ["socketio.sid": "\(sid)", "error": "\(failure)"])
        }
        let calls = server.websocketClosed(sid: sid, probe: progress.withLock { $0.probe })
        await server.perform(calls)
        queue.finish()
    }
}
