import HummingbirdSocketIO
import Foundation
import Hummingbird
import Logging
import SocketIO
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The Socket.IO endpoint live on a free port: HTTP long-polling with Foundation's HTTP
/// client, WebSocket with `LoopbackWebSocket` (and, from Python, the real python-socketio
/// client in tools/tests/test_socketio_interop.py).
@Suite struct SocketIOEndpointTests {
    /// Runs the conformance server on a free port for `body`, then shuts it down. Its
    /// heartbeat and connect timeout are the defaults (25 s / 20 s, 45 s) rather than the
    /// official suites' 300 / 200 ms and 1 s, so that pings neither interleave with the
    /// packets these tests expect nor time a session out on a loaded machine (the suites,
    /// run against the conformance server's own settings, test those timers).
    func withServer(_ body: (URL) async throws -> Void) async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = ConformanceServer.application(port: 0, logger: logger, heartbeat: (.seconds(25), .seconds(20)),
                                                connectTimeout: .seconds(45)) { port in
            continuation.yield(port)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            let base = try #require(URL(string: "http://127.0.0.1:\(port)/socket.io/"))
            try await body(base)
            group.cancelAll()
        }
    }

    func request(_ base: URL, _ query: String, method: String = "GET", body: String? = nil) async throws -> (Int, String) {
        let url = try #require(URL(string: base.absoluteString + "?" + query))
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 5
        if let body { request.httpBody = Data(body.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    func expectResponse(_ response: (Int, String), _ status: Int, _ body: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
        let (actualStatus, actualBody) = response
        #expect(actualStatus == status, sourceLocation: sourceLocation)
        #expect(actualBody == body, sourceLocation: sourceLocation)
    }

    @Test func pollingHandshakeConnectEventAndAck() async throws {
        try await withServer { base in
            let (status, open) = try await request(base, "EIO=4&transport=polling")
            #expect(status == 200 && open.hasPrefix("0{"))
            let handshake = try JSONParser.parse(String(open.dropFirst()))
            let sid = try #require(handshake["sid"]?.stringValue)
            let session = "EIO=4&transport=polling&sid=\(sid)"

            expectResponse(try await request(base, session, method: "POST", body: #"40{"token":"t"}"#), 200, "ok")
            // A POST is answered before its handlers run: the CONNECT reply and the handler's
            // event may come in one poll or two.
            var packets: [String] = []
            for _ in 0..<3 where packets.count < 2 {
                let (_, polled) = try await request(base, session)
                packets += polled.split(separator: "\u{1e}").map(String.init)
            }
            #expect(packets.count == 2)
            #expect(packets.first?.hasPrefix(#"40{"sid":"#) == true)
            #expect(packets.last == #"42["auth",{"token":"t"}]"#)

            expectResponse(try await request(base, session, method: "POST", body: #"42["message",1,"two"]"#), 200, "ok")
            let back = try await request(base, session)
            #expect(back.1 == #"42["message-back",1,"two"]"#)
            expectResponse(try await request(base, session, method: "POST", body: #"421["message-with-ack","x"]"#), 200, "ok")
            let ack = try await request(base, session)
            #expect(ack.1 == #"431["x"]"#)
        }
    }

    @Test func badRequestsGetTheReferenceErrors() async throws {
        try await withServer { base in
            expectResponse(try await request(base, "transport=polling"), 400, #"{"code":5,"message":"Unsupported protocol version"}"#)
            expectResponse(try await request(base, "EIO=4&transport=carrier-pigeon"), 400, #"{"code":0,"message":"Transport unknown"}"#)
            expectResponse(try await request(base, "EIO=4&transport=polling&sid=nope"), 400, #"{"code":1,"message":"Session ID unknown"}"#)
            let post = try await request(base, "EIO=4&transport=polling", method: "POST", body: "40")
            #expect(post.0 == 400)
        }
    }

    @Test func aMalformedPayloadClosesTheSession() async throws {
        try await withServer { base in
            let (_, open) = try await request(base, "EIO=4&transport=polling")
            let sid = try #require(try JSONParser.parse(String(open.dropFirst()))["sid"]?.stringValue)
            let session = "EIO=4&transport=polling&sid=\(sid)"
            let bad = try await request(base, session, method: "POST", body: "9nonsense")
            #expect(bad.0 == 400)
            let after = try await request(base, session)
            #expect(after.0 == 400)
        }
    }
}
