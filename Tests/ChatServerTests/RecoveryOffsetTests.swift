import Journal
import SocketIO
import Testing
@testable import ChatServer

@Suite struct RecoveryOffsetTests {
    @Test func theOffsetAClientPresentsIsCheckedNotTrusted() {
        #expect(ChatGateway.recoveryStart("-1") == .zero)
        #expect(ChatGateway.recoveryStart("41") == Offset(42))
        for bad in ["", "x", "-2", "1.5", String(UInt64.max), "99999999999999999999999"] {
            #expect(ChatGateway.recoveryStart(bad) == nil, "\(bad)")
        }
    }
}
