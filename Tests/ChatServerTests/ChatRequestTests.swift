import Journal
import SocketIO
import Testing

@testable import ChatServer

@Suite struct ISO8601Tests {
    @Test func readsJavaScriptToISOStringAndOffsets() {
        #expect(ISO8601.milliseconds("1970-01-01T00:00:00.000Z") == 0)
        #expect(ISO8601.milliseconds("2021-07-14T05:55:56.868Z") == 1_626_242_156_868)
        #expect(ISO8601.milliseconds("2021-07-14T07:55:56.868+02:00") == 1_626_242_156_868)
        #expect(ISO8601.milliseconds("2021-07-14T05:55:56Z") == 1_626_242_156_000)
        #expect(ISO8601.milliseconds("2021-07-14T05:55:56.8Z") == 1_626_242_156_800)
        #expect(ISO8601.milliseconds("2021-07-14T05:55:56.86899Z") == 1_626_242_156_868)
        #expect(ISO8601.milliseconds("2000-02-29T12:00:00.000Z") == 951_825_600_000)
    }

    @Test func refusesWhatIsNotATime() {
        for text in ["", "yesterday", "2021-13-14T05:55:56.868Z", "2021-07-14T05:55:56.Z", "2021-07-14T05:55:56.868",
                     "2021-07-14T05:55:56.868Zjunk", "2021-07-14T25:55:56.868Z", "2021-07-14T05:55:56.868+0200"] {
            #expect(ISO8601.milliseconds(text) == nil, "\(text)")
        }
    }
}

@Suite struct RecoveryOffsetTests {
    @Test func theOffsetAClientPresentsIsCheckedNotTrusted() {
        #expect(ChatGateway.recoveryStart("-1") == .zero)
        #expect(ChatGateway.recoveryStart("41") == Offset(42))
        for bad in ["", "x", "-2", "1.5", String(UInt64.max), "99999999999999999999999"] {
            #expect(ChatGateway.recoveryStart(bad) == nil, "\(bad)")
        }
    }
}

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
