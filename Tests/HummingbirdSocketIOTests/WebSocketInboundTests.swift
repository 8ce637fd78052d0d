import Testing
@testable import HummingbirdSocketIO

/// The inbound side of `WebSocketConnection`: what the event loop hands the connection's
/// receiver, and when a consumer task must be started for it.
@Suite struct WebSocketInboundTests {
    @Test func readingPausesPastTheByteLimitAndResumesWhenTaken() {
        let inbound = WebSocketConnection.Inbound(pauseAtBytes: 10)
        #expect(inbound.append(.text("12345")).pause == false)
        #expect(inbound.append(.text("67890")).pause == false)  // exactly at the limit
        #expect(inbound.append(.binary([1])).pause == true)  // over it: pause
        guard case .messages(let messages, let resume)? = inbound.take() else {
            Issue.record("no messages")
            return
        }
        #expect(messages == [.text("12345"), .text("67890"), .binary([1])])
        #expect(resume)
        #expect(inbound.append(.text("a")).pause == false)  // the count starts again
        _ = inbound.end(nil)
        guard case .messages(let last, false)? = inbound.take(), case .end(nil)? = inbound.take() else {
            Issue.record("the end did not follow the last message")
            return
        }
        #expect(last == [.text("a")])
        #expect(inbound.append(.text("late")).pause == false)
        #expect(inbound.take() == nil)
    }

    @Test func aConsumerIsStartedOnlyWhenThereIsWorkForAReceiverAndNoneRuns() {
        let inbound = WebSocketConnection.Inbound(pauseAtBytes: 1 << 20)
        // Before the receiver is set, messages wait.
        #expect(inbound.append(.text("early")).start == nil)
        let receiver = RecordingReceiver()
        #expect(inbound.receive(with: receiver) === receiver)
        #expect(inbound.receive(with: RecordingReceiver()) == nil)  // set once
        // A consumer runs: no second one.
        #expect(inbound.append(.text("more")).start == nil)
        guard case .messages([.text("early"), .text("more")], false)? = inbound.take() else {
            Issue.record("the consumer did not get both messages")
            return
        }
        #expect(inbound.take() == nil)  // nothing left: the consumer stops
        #expect(inbound.take() == nil)
        // Idle: the next message needs a consumer again.
        #expect(inbound.append(.text("next")).start === receiver)
        #expect(inbound.end(nil) == nil)  // the running consumer will take the end
        guard case .messages([.text("next")], _)? = inbound.take(), case .end(nil)? = inbound.take() else {
            Issue.record("the end did not follow the message")
            return
        }
        #expect(inbound.take() == nil)
    }

    @Test func theEndOfAnIdleConnectionStartsAConsumerAndTheReceiverIsNotKeptAfterIt() {
        let inbound = WebSocketConnection.Inbound(pauseAtBytes: 1 << 20)
        weak var released: RecordingReceiver?
        do {
            let receiver = RecordingReceiver()
            released = receiver
            #expect(inbound.receive(with: receiver) == nil)  // nothing to do yet
            #expect(inbound.end(WebSocketConnection.ProtocolViolation(code: .protocolError, reason: "test")) === receiver)
            #expect(inbound.end(nil) == nil)  // once
        }
        guard case .end(let failure?)? = inbound.take(), let violation = failure as? WebSocketConnection.ProtocolViolation else {
            Issue.record("the consumer did not get the violation")
            return
        }
        #expect(violation.code == .protocolError)
        #expect(released == nil)
        #expect(inbound.take() == nil)
    }
}

extension WebSocketConnection.Inbound.Taken: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.messages(let a, let x), .messages(let b, let y)): a == b && x == y
        case (.end(nil), .end(nil)): true
        default: false
        }
    }
}

private func === (lhs: (any WebSocketReceiver)?, rhs: RecordingReceiver) -> Bool {
    guard let lhs = lhs as? RecordingReceiver else { return false }
    return ObjectIdentifier(lhs) == ObjectIdentifier(rhs)
}
