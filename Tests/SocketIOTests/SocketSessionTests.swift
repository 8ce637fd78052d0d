import Testing

@testable import SocketIO

@Suite struct SocketSessionTests {
    let t0 = ContinuousClock.now

    func session(namespaces: Set<String> = ["/", "/custom"]) -> SocketSession {
        var configuration = SocketSession.Configuration()
        configuration.namespaces = namespaces
        configuration.connectTimeout = .seconds(1)
        configuration.pendingAcksMax = 2
        return SocketSession(configuration: configuration, openedAt: t0)
    }

    func connected() -> SocketSession {
        var s = session()
        _ = s.received(.text("0"), now: t0)
        _ = s.accept(namespace: "/", socketID: "sock1", pid: "p1")
        return s
    }

    @Test func connectAsksTheApplicationThenAnswersWithTheSocketIDAndPid() {
        var s = session()
        #expect(s.received(.text(#"0{"token":"abc"}"#), now: t0) == [.authorize(namespace: "/", auth: .object([("token", .string("abc"))]), recovery: nil)])
        #expect(s.accept(namespace: "/", socketID: "sock1", pid: "p1")
            == [.send([.message(#"0{"sid":"sock1","pid":"p1"}"#)]), .connected(namespace: "/", socketID: "sock1")])
        #expect(s.sockets == ["/": "sock1"])
    }

    @Test func aRefusedConnectGetsConnectError() {
        var s = session()
        _ = s.received(.text("0/custom,"), now: t0)
        #expect(s.refuse(namespace: "/custom", message: "Not authorized")
            == [.send([.message(#"4/custom,{"message":"Not authorized"}"#)])])
        #expect(s.sockets.isEmpty)
    }

    @Test func anUnknownNamespaceIsRefusedWithoutAskingTheApplication() {
        var s = session()
        #expect(s.received(.text("0/nowhere,"), now: t0) == [.send([.message(#"4/nowhere,{"message":"Invalid namespace"}"#)])])
    }

    @Test func aReconnectingClientPresentsItsPidAndOffset() {
        var s = session()
        let actions = s.received(.text(#"0{"pid":"p1","offset":"1234"}"#), now: t0)
        guard case .authorize(_, _, let recovery)? = actions.first else {
            Issue.record("expected authorize, got \(actions)")
            return
        }
        #expect(recovery == SocketSession.Recovery(pid: "p1", offset: "1234"))
    }

    @Test func eventsAndAcksFlowBothWays() {
        var s = connected()
        #expect(s.received(.text(#"21["message-with-ack",1,"two"]"#), now: t0)
            == [.event(namespace: "/", name: "message-with-ack", arguments: [.number(1), .string("two")], ackID: 1)])
        #expect(s.ack(namespace: "/", id: 1, arguments: [.number(1), .string("two")]) == [.send([.message(#"31[1,"two"]"#)])])

        let (actions, id) = s.emit(namespace: "/", event: "ping-me", arguments: [.binary([9])], ackTimeout: .seconds(1), now: t0)
        #expect(id == 0)
        #expect(actions == [.send([.message(#"51-0["ping-me",{"_placeholder":true,"num":0}]"#), EnginePacket(.message, .binary([9]))])])
        #expect(s.received(.text(#"30["pong"]"#), now: t0) == [.ackReceived(namespace: "/", id: 0, arguments: [.string("pong")])])
        #expect(s.received(.text(#"30["again"]"#), now: t0) == [], "an ack is delivered once")
    }

    /// A received event's arguments relayed under another name are copied as text: same
    /// arguments, the new name, no ack id, the emitting namespace.
    @Test(arguments: [
        (#"2["message",1,"two",{"3":[true,"a\"b"]}]"#, #"2["message-back",1,"two",{"3":[true,"a\"b"]}]"#),
        (#"217[ "message" , "x" ]"#, #"2["message-back", "x" ]"#),
        (#"2["solo"]"#, #"2["message-back"]"#),
    ])
    func relayedArgumentsAreCopiedAsTheyCame(_ received: String, _ sent: String) throws {
        var s = connected()
        guard case .event(_, _, let arguments, _)? = s.received(.text(received), now: t0).first else {
            Issue.record("no event for \(received)")
            return
        }
        #expect(s.emit(namespace: "/", event: "message-back", relaying: arguments, now: t0) == [.send([.message(sent)])])
        // The same arguments as values, and read straight into values, agree.
        let values = try SocketPacket.decode(sent).packet.arguments
        #expect(arguments.values == values)
        let read = try arguments.read { reader throws(SocketIOProtocolError) in
            var items: [JSONValue] = []
            while try reader.nextElement() { items.append(try TypedEventTests.readValue(&reader)) }
            return items
        }
        #expect(read == values)
    }

    @Test func eventsWrittenFromValuesGoOutAsText() {
        var s = connected()
        let actions = s.emit(namespace: "/", event: "new-message", now: t0) { json in
            json.beginObject()
            json.key("group")
            json.string("design-12")
            json.key("created")
            json.integer(1_795_000_000_123)
            json.endObject()
            json.bool(true)
        }
        #expect(actions == [.send([.message(#"2["new-message",{"group":"design-12","created":1795000000123},true]"#)])])
        #expect(s.emit(namespace: "/custom", event: "x", now: t0) { $0.null() } == [], "not connected to /custom")
    }

    @Test func relayedBinaryArgumentsGoAsAttachments() throws {
        var s = connected()
        _ = s.received(.text(#"51-["upload",{"_placeholder":true,"num":0}]"#), now: t0)
        guard case .event(_, _, let arguments, _)? = s.received(.binary([1, 2, 3]), now: t0).first else {
            Issue.record("no event")
            return
        }
        #expect(s.emit(namespace: "/", event: "echo", relaying: arguments, now: t0)
            == [.send([.message(#"51-["echo",{"_placeholder":true,"num":0}]"#), EnginePacket(.message, .binary([1, 2, 3]))])])
        #expect(throws: SocketIOProtocolError.self) { try arguments.read { _ throws(SocketIOProtocolError) in 0 } }
        // Arguments built from values read the same way as received ones.
        let built: SocketEventArguments = [.number(5), .string("x")]
        #expect(try built.read { reader throws(SocketIOProtocolError) in
            _ = try reader.nextElement()
            return try reader.readInteger()
        } == 5)
    }

    @Test func binaryEventsAreReassembled() {
        var s = connected()
        #expect(s.received(.text(#"51-["upload",{"_placeholder":true,"num":0}]"#), now: t0) == [])
        #expect(s.received(.binary([1, 2, 3]), now: t0) == [.event(namespace: "/", name: "upload", arguments: [.binary([1, 2, 3])], ackID: nil)])
    }

    @Test func ackTimeoutsFireAndPendingAcksAreBounded() {
        var s = connected()
        _ = s.emit(namespace: "/", event: "a", arguments: [], ackTimeout: .milliseconds(100), now: t0)
        _ = s.emit(namespace: "/", event: "b", arguments: [], ackTimeout: .milliseconds(300), now: t0)
        let (refused, id) = s.emit(namespace: "/", event: "c", arguments: [], ackTimeout: .seconds(1), now: t0)
        #expect(refused.isEmpty && id == nil, "the third pending ack is over the limit of 2")
        #expect(s.nextDeadline == t0.advanced(by: .milliseconds(100)))
        #expect(s.timerFired(now: t0.advanced(by: .milliseconds(150))) == [.ackTimedOut(namespace: "/", id: 0)])
        #expect(s.timerFired(now: t0.advanced(by: .milliseconds(400))) == [.ackTimedOut(namespace: "/", id: 1)])
    }

    @Test func eventsForANamespaceNotConnectedAreDropped() {
        var s = connected()
        #expect(s.received(.text(#"2/custom,["hello"]"#), now: t0) == [])
    }

    @Test func withoutAConnectInTimeTheConnectionCloses() {
        var s = session()
        #expect(s.timerFired(now: t0.advanced(by: .milliseconds(500))) == [])
        #expect(s.timerFired(now: t0.advanced(by: .seconds(1))) == [.closeConnection(.connectTimeout)])
    }

    @Test func disconnectsFromEitherSide() {
        var s = connected()
        _ = s.received(.text("0/custom,"), now: t0)
        _ = s.accept(namespace: "/custom", socketID: "sock2")
        #expect(s.received(.text("1/custom,"), now: t0) == [.disconnected(namespace: "/custom", socketID: "sock2", reason: .clientDisconnect)])
        #expect(s.disconnect(namespace: "/", now: t0) == [.send([.message("1")]), .disconnected(namespace: "/", socketID: "sock1", reason: .serverDisconnect)])
        #expect(s.sockets.isEmpty)
    }

    @Test func leavingTheLastNamespaceKeepsTheConnectionForConnectTimeout() {
        var s = connected()
        #expect(s.nextDeadline == nil)
        let left = t0.advanced(by: .seconds(5))
        #expect(s.received(.text("1"), now: left) == [.disconnected(namespace: "/", socketID: "sock1", reason: .clientDisconnect)])
        // Still open, as with the reference server: the client may connect again over it...
        #expect(s.nextDeadline == left.advanced(by: .seconds(1)))
        #expect(s.timerFired(now: left.advanced(by: .milliseconds(999))) == [])
        #expect(s.received(.text("0/custom,"), now: left) == [.authorize(namespace: "/custom", auth: nil, recovery: nil)])
        _ = s.accept(namespace: "/custom", socketID: "sock2")
        #expect(s.nextDeadline == nil)
        // ...but one left idle (here by a server-side disconnect) closes after connectTimeout.
        let idle = left.advanced(by: .seconds(2))
        #expect(s.disconnect(namespace: "/custom", now: idle) == [.send([.message("1/custom,")]), .disconnected(namespace: "/custom", socketID: "sock2", reason: .serverDisconnect)])
        #expect(s.timerFired(now: idle.advanced(by: .seconds(1))) == [.closeConnection(.connectTimeout)])
    }

    @Test func malformedPacketsCloseTheConnection() {
        var s = connected()
        #expect(s.received(.text("2{}"), now: t0) == [.disconnected(namespace: "/", socketID: "sock1", reason: .protocolError("invalid Socket.IO packet: EVENT payload must be a non-empty array starting with the event name")),
                                             .closeConnection(.protocolError("invalid Socket.IO packet: EVENT payload must be a non-empty array starting with the event name"))])
        #expect(s.received(.text(#"2["late"]"#), now: t0) == [])
    }

    @Test func aSecondConnectToTheSameNamespaceIsAProtocolError() {
        var s = connected()
        guard case .closeConnection? = s.received(.text("0"), now: t0).last else {
            Issue.record("expected the connection to close")
            return
        }
    }

    @Test func transportCloseDisconnectsEveryNamespace() {
        var s = connected()
        #expect(s.transportClosed() == [.disconnected(namespace: "/", socketID: "sock1", reason: .transportClosed)])
        #expect(s.nextDeadline == nil)
    }
}
