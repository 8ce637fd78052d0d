import Logging
import SocketIO
import Synchronization
import Testing
@testable import HummingbirdSocketIO

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
