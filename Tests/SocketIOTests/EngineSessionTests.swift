import Testing

@testable import SocketIO

@Suite struct EngineSessionTests {
    let t0 = ContinuousClock.now
    var configuration: EngineConfiguration {
        var configuration = EngineConfiguration()
        configuration.pingInterval = .milliseconds(300)
        configuration.pingTimeout = .milliseconds(200)
        configuration.pollingBufferPacketsMax = 4
        return configuration
    }

    func polling() -> EngineSession {
        EngineSession.open(sid: "abc", transport: .polling, configuration: configuration, now: t0).0
    }

    func body(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func theHandshakeAdvertisesTheUpgradeAndTheTimers() throws {
        let (_, open) = EngineSession.open(sid: "abc", transport: .polling, configuration: configuration, now: t0)
        #expect(open.textFrame == #"0{"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#)
        let (_, wsOpen) = EngineSession.open(sid: "x", transport: .websocket, configuration: configuration, now: t0)
        let handshake = try JSONParser.parse(String(try #require(wsOpen.textFrame).dropFirst()))
        #expect(handshake["upgrades"] == .array([]))
    }

    @Test func aPollWaitsForPacketsAndPostsAreDelivered() {
        var session = polling()
        #expect(session.pollArrived(now: t0) == .hold)
        #expect(session.send([.message("hello")]) == [.answerPoll("4hello")])
        let (ok, actions) = session.postArrived(body("4a\u{1e}4b\u{1e}bAQI="))
        #expect(ok)
        #expect(actions == [.deliver([.text("a"), .text("b"), .binary([1, 2])])])
        // Packets sent while no poll waits are buffered and answered together.
        #expect(session.send([.message("x")]) == [])
        #expect(session.send([.message("y")]) == [])
        #expect(session.pollArrived(now: t0) == .answer("4x\u{1e}4y"))
    }

    /// python-engineio's client drops a session whose poll brings more than 16 packets: a
    /// poll takes at most `pollPacketsMax`, and the next poll is answered at once with the rest.
    @Test func aPollTakesAtMostPollPacketsMaxAndTheNextOneTheRest() {
        var configuration = configuration
        configuration.pollingBufferPacketsMax = 100
        configuration.pollPacketsMax = 3
        var session = EngineSession.open(sid: "abc", transport: .polling, configuration: configuration, now: t0).0
        #expect(session.send((1...7).map { EnginePacket.message("m\($0)") }) == [])
        #expect(session.bufferedPacketCount == 7)
        #expect(session.pollArrived(now: t0) == .answer("4m1\u{1e}4m2\u{1e}4m3"))
        #expect(session.pollArrived(now: t0) == .answer("4m4\u{1e}4m5\u{1e}4m6"))
        #expect(session.pollArrived(now: t0) == .answer("4m7"))
        #expect(session.bufferedPacketCount == 0)
        #expect(session.pollArrived(now: t0) == .hold)
        // A waiting poll answered by a burst also takes only the first ones.
        #expect(session.send((8...12).map { EnginePacket.message("m\($0)") }) == [.answerPoll("4m8\u{1e}4m9\u{1e}4m10")])
        #expect(session.pollArrived(now: t0) == .answer("4m11\u{1e}4m12"))
        // The default fits python-engineio's client.
        #expect(EngineConfiguration().pollPacketsMax == 16)
    }

    @Test func aSecondPollWhileOneWaitsClosesTheSession() {
        var session = polling()
        #expect(session.pollArrived(now: t0) == .hold)
        #expect(session.pollArrived(now: t0) == .reject([.answerPoll("1"), .closed(.duplicatePoll)]))
        #expect(session.isClosed)
        #expect(session.pollArrived(now: t0) == .reject([]))
    }

    @Test func aMalformedPostClosesTheSessionWith400() {
        var session = polling()
        let (ok, actions) = session.postArrived(body("abc"))
        #expect(!ok)
        guard case .closed(.protocolError)? = actions.last else {
            Issue.record("expected a protocol-error close, got \(actions)")
            return
        }
        #expect(session.pollArrived(now: t0) == .reject([]))
    }

    @Test func anOversizePostIsRefused() {
        var session = polling()
        let (ok, _) = session.postArrived([UInt8](repeating: UInt8(ascii: "4"), count: 1_000_001))
        #expect(!ok && session.isClosed)
    }

    @Test func aClientCloseEndsTheWaitingPollWithANoop() {
        var session = polling()
        #expect(session.pollArrived(now: t0) == .hold)
        let (ok, actions) = session.postArrived(body("1"))
        #expect(ok)
        #expect(actions == [.answerPoll("6"), .closed(.clientClosed)])
    }

    @Test func theServerPingsAndClosesWithoutAPong() {
        var session = polling()
        #expect(session.nextDeadline == t0.advanced(by: .milliseconds(300)))
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(100))) == [])
        #expect(session.pollArrived(now: t0) == .hold)
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(300))) == [.answerPoll("2")])
        // Answered in time: the next ping comes one interval later.
        #expect(session.postArrived(body("3")).ok)
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(550))) == [])
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(600))) == [])  // buffered: no poll waits
        // Not answered: closed once the timeout passes.
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(800))) == [.closed(.pingTimeout)])
        #expect(session.postArrived(body("3")).ok == false)
    }

    @Test func aLateTimerDoesNotStretchThePingTimeout() {
        var session = polling()
        // The caller's timer comes 40 ms after the ping was due...
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(340))) == [])
        #expect(session.buffer == [EnginePacket(.ping)])
        // ...yet the client must still answer by due + pingTimeout = 500 ms.
        #expect(session.nextDeadline == t0.advanced(by: .milliseconds(500)))
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(500))) == [.closed(.pingTimeout)])
    }

    @Test func aSlowPollingClientIsClosedWhenItsBufferIsFull() {
        var session = polling()
        for n in 0..<4 { #expect(session.send([.message("\(n)")]) == []) }
        #expect(session.send([.message("overflow")]) == [.closed(.tooSlow)])
    }

    /// Packets counted, not bytes, let one polling reader that never polled hold gigabytes.
    @Test func aSlowPollingClientIsClosedWhenItsBufferHoldsTooManyBytesButOneLargeReplyPasses() {
        var configuration = self.configuration
        configuration.pollingBufferPacketsMax = 100
        configuration.pollingBufferBytesMax = 1_000
        var session = EngineSession.open(sid: "abc", transport: .polling, configuration: configuration, now: t0).0
        let large = String(repeating: "x", count: 3_000)
        #expect(session.send([.message(large)]) == [], "a reply larger than the bound reaches an empty buffer")
        #expect(session.bufferedBytes == 3_000)
        guard case .answer(let body) = session.pollArrived(now: t0) else {
            Issue.record("the poll was not answered with the buffered reply")
            return
        }
        #expect(body.utf8.count > 3_000)
        #expect(session.bufferedBytes == 0)
        for _ in 0..<4 { #expect(session.send([.message(String(repeating: "y", count: 200))]) == []) }
        #expect(session.send([.message(String(repeating: "z", count: 300))]) == [.closed(.tooSlow)])
        #expect(session.bufferedBytes == 0)
    }

    @Test func upgradeProbeNoopAndSwitchToWebSocket() {
        var session = polling()
        #expect(session.pollArrived(now: t0) == .hold)
        // The WebSocket opens: the waiting poll is held for upgradePollHold, then ends with a
        // noop (as is a poll that arrives during the upgrade)...
        #expect(session.probeAttached(now: t0) == (true, []))
        #expect(session.nextDeadline == t0.advanced(by: .milliseconds(100)))
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(100))) == [.answerPoll("6")])
        // ...and so is a poll that arrives during the upgrade.
        #expect(session.pollArrived(now: t0) == .hold)
        #expect(session.nextDeadline == t0.advanced(by: .milliseconds(100)))
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(99))) == [])
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(100))) == [.answerPoll("6")])
        #expect(session.probeFrameArrived(EnginePacket(.ping, .text("probe"))) == [.writeProbeFrames([EnginePacket(.pong, .text("probe"))])])
        // Something sent before the upgrade completes waits for the WebSocket, even while a
        // poll is held.
        #expect(session.pollArrived(now: t0.advanced(by: .milliseconds(110))) == .hold)
        #expect(session.send([.message("early")]) == [])
        // The upgrade completes before the held poll's noop: that poll gets 400.
        #expect(session.probeFrameArrived(EnginePacket(.upgrade)) == [.rejectPoll, .writeFrames([.message("early")])])
        #expect(session.transport == .websocket)
        #expect(session.pollArrived(now: t0) == .reject([]))
        #expect(session.frameArrived(.message("hello")) == [.deliver([.text("hello")])])
        #expect(session.send([.message("later")]) == [.writeFrames([.message("later")])])
        // A second WebSocket for the same session is refused.
        #expect(session.probeAttached(now: t0).accepted == false)
        #expect(session.probeFrameArrived(EnginePacket(.ping, .text("probe"))) == [.writeProbeFrames([EnginePacket(.close)])])
    }

    @Test func anUpgradeThatDoesNotCompleteInTimeIsAbandoned() {
        var slowPings = configuration
        slowPings.pingInterval = .seconds(60)
        var session = EngineSession.open(sid: "abc", transport: .polling, configuration: slowPings, now: t0).0
        #expect(session.probeAttached(now: t0).accepted)
        #expect(session.pollArrived(now: t0) == .hold)
        _ = session.send([.message("kept")])
        // The upgrade stalls after the probe.
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(100))) == [.answerPoll("6")])
        #expect(session.probeFrameArrived(EnginePacket(.ping, .text("probe"))).count == 1)
        #expect(session.pollArrived(now: t0.advanced(by: .milliseconds(9_950))) == .hold)
        #expect(session.timerFired(now: t0.advanced(by: .seconds(10))) == [.answerPoll("4kept"), .closeProbe])
        #expect(session.transport == .polling)
        #expect(session.nextDeadline == t0.advanced(by: .seconds(60)))
        // Polling goes on; a new upgrade may start.
        #expect(session.pollArrived(now: t0.advanced(by: .seconds(10))) == .hold)
        #expect(session.probeAttached(now: t0.advanced(by: .seconds(10))) == (true, []))
    }

    /// The official suite's "ignores HTTP requests with same sid after upgrade": the poll may
    /// reach the server before the WebSocket is attached (its frames travel on another
    /// connection). Whatever the order, a poll that the upgrade overtakes gets 400.
    @Test func aPollWaitingBeforeTheProbeAttachesGets400WhenTheUpgradeCompletes() {
        var session = polling()
        #expect(session.pollArrived(now: t0) == .hold)
        #expect(session.probeAttached(now: t0) == (true, []))
        #expect(session.probeFrameArrived(EnginePacket(.ping, .text("probe"))) == [.writeProbeFrames([EnginePacket(.pong, .text("probe"))])])
        #expect(session.probeFrameArrived(EnginePacket(.upgrade)) == [.rejectPoll])
        #expect(session.transport == .websocket)
    }

    @Test func anUpgradeMustProbeBeforeItSwitches() {
        var session = polling()
        _ = session.probeAttached(now: t0)
        #expect(session.probeFrameArrived(EnginePacket(.upgrade)).last == .closed(.protocolError("unexpected upgrade during upgrade")))
    }

    @Test func aProbeSocketThatClosesLetsPollingGoOn() {
        var session = polling()
        _ = session.probeAttached(now: t0)
        _ = session.send([.message("kept")])
        #expect(session.transportClosed(probe: true) == [])
        #expect(session.pollArrived(now: t0) == .answer("4kept"))
    }

    @Test func unexpectedPacketsDuringUpgradeClose() {
        var session = polling()
        _ = session.probeAttached(now: t0)
        #expect(session.probeFrameArrived(.message("no probe")).last == .closed(.protocolError("unexpected message during upgrade")))
    }

    @Test func webSocketSessionsPingAndCloseOnBadPackets() {
        var (session, _) = EngineSession.open(sid: "w", transport: .websocket, configuration: configuration, now: t0)
        #expect(session.timerFired(now: t0.advanced(by: .milliseconds(300))) == [.writeFrames([EnginePacket(.ping)])])
        #expect(session.frameArrived(EnginePacket(.pong)) == [])
        #expect(session.frameArrived(EnginePacket(.upgrade)).last == .closed(.protocolError("unexpected upgrade packet from the client")))
    }

    @Test func serverCloseTellsTheClient() {
        var session = polling()
        #expect(session.pollArrived(now: t0) == .hold)
        #expect(session.close() == [.answerPoll("1"), .closed(.serverClosed)])
        var (ws, _) = EngineSession.open(sid: "w", transport: .websocket, configuration: configuration, now: t0)
        #expect(ws.close() == [.writeFrames([EnginePacket(.close)]), .closed(.serverClosed)])
        #expect(ws.close() == [])
    }

    @Test func configurationLimitsAreValidated() {
        var bad = EngineConfiguration()
        bad.pingInterval = .zero
        #expect(throws: SocketIOProtocolError.self) { try bad.validate() }
        var hold = EngineConfiguration()
        hold.upgradePollHold = hold.upgradeTimeout
        #expect(throws: SocketIOProtocolError.self) { try hold.validate() }
        var poll = EngineConfiguration()
        poll.pollPacketsMax = 0
        #expect(throws: SocketIOProtocolError.self) { try poll.validate() }
        #expect(throws: Never.self) { try EngineConfiguration().validate() }
    }
}
