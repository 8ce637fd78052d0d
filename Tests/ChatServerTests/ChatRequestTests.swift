import Journal
import SocketIO
import Testing

@testable import ChatServer

@Suite struct ChatRequestTests {
    /// The typed path for sends reads exactly what the general path reads, or leaves the
    /// payload to it.
    @Test func theSendFastPathAgreesWithTheGeneralParser() throws {
        let payloads: [JSONValue] = [
            .object([("group", .string("g")), ("message", .string("hi")), ("created", .number(1_700_000_000_123))]),
            .object([("message", .string("hé\n👋")), ("group", .string("g")), ("created", .string("2021-07-14T05:55:56.868Z")),
                     ("username", .string("alice")), ("client_id", .string("c1")), ("extra", .object([("x", .array([.null]))]))]),
            .object([("group", .string("g")), ("message", .string("no time"))]),
            .object([("group", .string("g")), ("message", .string("x")), ("created", .number(1.6))]),
        ]
        for payload in payloads {
            let fast = try ChatRequest.parse("send-group-message", arguments: SocketEventArguments([payload]))
            let general = try ChatRequest.parse("send-group-message", [payload])
            #expect(fast == general, "\(payload)")
        }
    }

    @Test func whatTheFastPathDeclinesGetsTheGeneralParsersError() {
        let refused: [JSONValue] = [
            .object([("group", .string("g")), ("message", .number(42)), ("created", .number(1))]),
            .object([("group", .string("")), ("message", .string("x"))]),
            .object([("group", .string("g")), ("message", .string("x")), ("created", .string("yesterday"))]),
            .object([("group", .string("g")), ("message", .string("x")), ("created", .bool(true))]),
            .object([("message", .string("x"))]),
            .string("just text"),
            // The server's prefix for the client ids it makes up (FORMAT.md §5).
            .object([("group", .string("g")), ("message", .string("x")), ("client_id", .string("chatlog:mine"))]),
        ]
        for payload in refused {
            #expect(throws: PayloadError.self) {
                try ChatRequest.parse("send-group-message", arguments: SocketEventArguments([payload]))
            }
        }
        // Null members are absent, as in the general path.
        let withNull = JSONValue.object([("group", .string("g")), ("message", .string("x")), ("username", .null)])
        #expect((try? ChatRequest.parse("send-group-message", arguments: SocketEventArguments([withNull])))
                == (try? ChatRequest.parse("send-group-message", [withNull])))
    }
}
