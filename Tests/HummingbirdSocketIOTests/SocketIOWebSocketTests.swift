import HummingbirdSocketIO
import Foundation
import Hummingbird
import LoopbackWebSocket
import Logging
import SocketIO
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The Socket.IO endpoint live over WebSocket, on a free port, with a real WebSocket client.
@Suite struct SocketIOWebSocketTests {
    let live = SocketIOEndpointTests()

    /// The next message that is not an Engine.IO ping (pings are answered).
    func receive(_ inbound: inout LoopbackWebSocket.Inbound, _ outbound: LoopbackWebSocket.Outbound) async throws -> LoopbackWebSocket.Message? {
        while let message = try await inbound.next() {
            if message == .text("2") {
                try await outbound.send(.text("3"))
                continue
            }
            return message
        }
        return nil
    }

    @Test func webSocketOnlySessionConnectsEmitsAcksAndCarriesBinary() async throws {
        try await live.withServer { base in
            let port = try #require(base.port)
            try await LoopbackWebSocket.withConnection(port: port, path: "/socket.io/?EIO=4&transport=websocket") { inbound, outbound in
                guard case .text(let open)? = try await receive(&inbound, outbound) else {
                    Issue.record("no open packet")
                    return
                }
                let handshake = try JSONParser.parse(String(open.dropFirst()))
                #expect(open.first == "0" && handshake["upgrades"] == .array([]))

                // CONNECT with an auth payload: the reply carries a socket id, then "auth" echoes it.
                try await outbound.send(.text(#"40{"token":"abc"}"#))
                guard case .text(let connected)? = try await receive(&inbound, outbound) else { return }
                #expect(connected.hasPrefix(#"40{"sid":"#))
                #expect(try await receive(&inbound, outbound) == .text(#"42["auth",{"token":"abc"}]"#))

                // An event, an event with an ack, and a binary event with two attachments.
                try await outbound.send(.text(#"42["message",1,"two",{"3":[true]}]"#))
                #expect(try await receive(&inbound, outbound) == .text(#"42["message-back",1,"two",{"3":[true]}]"#))
                try await outbound.send(.text(#"4217["message-with-ack","x"]"#))
                #expect(try await receive(&inbound, outbound) == .text(#"4317["x"]"#))
                try await outbound.send(contentsOf: [
                    .text(#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
                    .binary([1, 2, 3]), .binary([4, 5, 6]),
                ])
                #expect(try await receive(&inbound, outbound)
                    == .text(#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#))
                #expect(try await receive(&inbound, outbound) == .binary([1, 2, 3]))
                #expect(try await receive(&inbound, outbound) == .binary([4, 5, 6]))

                // Not an Engine.IO packet: the server closes the connection.
                try await outbound.send(.text("abc"))
                #expect(try await receive(&inbound, outbound) == nil)
            }
        }
    }

    @Test func pollingSessionUpgradesToWebSocket() async throws {
        try await live.withServer { base in
            let port = try #require(base.port)
            let (_, open) = try await live.request(base, "EIO=4&transport=polling")
            let sid = try #require(try JSONParser.parse(String(open.dropFirst()))["sid"]?.stringValue)
            let session = "EIO=4&transport=polling&sid=\(sid)"
            #expect(try await live.request(base, session, method: "POST", body: "40").0 == 200)
            // The CONNECT reply, then the handler's `auth` event, in one poll or two (a POST is
            // answered before its handlers run).
            var polled = try await live.request(base, session).1
            #expect(polled.hasPrefix(#"40{"sid":"#))
            if !polled.contains("\u{1e}") { polled = try await live.request(base, session).1 }
            #expect(polled.hasSuffix(#"42["auth",{}]"#))

            try await LoopbackWebSocket.withConnection(port: port, path: "/socket.io/?EIO=4&transport=websocket&sid=\(sid)") { inbound, outbound in
                try await outbound.send(.text("2probe"))
                #expect(try await receive(&inbound, outbound) == .text("3probe"))
                // A poll during the upgrade ends with a noop.
                #expect(try await live.request(base, session).1 == "6")
                try await outbound.send(.text("5"))
                try await outbound.send(.text(#"42["message","over websocket"]"#))
                #expect(try await receive(&inbound, outbound) == .text(#"42["message-back","over websocket"]"#))
                // Polling is over for this session.
                #expect(try await live.request(base, session).0 == 400)
                // A second WebSocket for the upgraded session is closed without a probe answer.
                let answer = try await LoopbackWebSocket.withConnection(port: port, path: "/socket.io/?EIO=4&transport=websocket&sid=\(sid)") { second, secondOut in
                    try? await secondOut.send(.text("2probe"))
                    return try await second.next()
                }
                #expect(answer == nil)
                // The first one carries on.
                try await outbound.send(.text(#"42["message","still here"]"#))
                #expect(try await receive(&inbound, outbound) == .text(#"42["message-back","still here"]"#))
            }
        }
    }
}
