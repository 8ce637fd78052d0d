import ChatModel
import Foundation
import Hummingbird
import HummingbirdSocketIO
import Journal
import Logging
import Projections
import Replication
import ServiceLifecycle
import SocketIO
import Synchronization
import Testing
@testable import ChatServer

/// The server's prefix for made-up client ids is refused from clients (FORMAT.md §5).
@Suite struct ClientMessageIDTests {
    @Test func clientsMayNotClaimTheServersPrefix() throws {
        let payload = JSONValue.object([("group", .string("g")), ("message", .string("m")), ("client_id", .string("chatlog:abc"))])
        #expect(throws: PayloadError.self) { try ChatRequest.parse("send-group-message", [payload]) }
        let fromStandby = try ChatRequest.parse("send-group-message", [payload], fromStandby: true)
        guard case .perform(.send(_, _, _, _, let clientID, _), _) = fromStandby else {
            Issue.record("a send")
            return
        }
        #expect(clientID == "chatlog:abc")
        #expect(throws: PayloadError.self) { try ChatRequest.checkClientID("chatlog:") }
        try ChatRequest.checkClientID("chatlog")
        try ChatRequest.checkClientID(nil)
    }
}
