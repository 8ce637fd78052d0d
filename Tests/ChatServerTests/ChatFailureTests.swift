import ChatAPI
import ChatModel
import Foundation
import HTTPTypes
import Testing
@testable import ChatServer

@Suite struct ChatFailureTests {
    /// Every code has the status README "HTTP API" gives it, and every rule code is a code.
    @Test func everyRefusalCodeHasTheStatusTheDocumentGivesIt() {
        let expected: [String: Int] = [
            "invalid_payload": 400, "invalid_text": 400, "invalid_name": 400, "invalid_client_message_id": 400, "not_private": 400,
            "invalid_emoji": 400, "direct_room": 403, "user_not_found": 404, "too_many_reactions": 409,
            "unauthorized": 401,
            "not_member": 403, "not_owner": 403, "not_invited": 403, "not_author": 403, "cannot_remove_owner": 403,
            "room_not_found": 404, "message_not_found": 404, "out_of_range": 410,
            "room_exists": 409, "already_member": 409, "already_invited": 409, "message_deleted": 409, "limit_exceeded": 409,
            "payload_too_large": 413, "rate_limited": 429, "unavailable": 503, "not_leader": 503,
        ]
        for rule in Rejection.Code.allCases {
            #expect(ChatFailure(Rejection(rule, "")).code.rawValue == rule.rawValue, "the rule code \(rule) keeps its string")
        }
        #expect(Set(ChatFailure.Code.allCases.map(\.rawValue)) == Set(expected.keys))
        for code in ChatFailure.Code.allCases {
            #expect(code.httpStatus.code == expected[code.rawValue], "\(code)")
            #expect(code.metricLabel == code.rawValue)
        }
    }

    /// A code another node reports that this build does not know is `unavailable`, its message kept.
    @Test func anUnknownReportedCodeIsUnavailable() {
        #expect(ChatFailure(reportedCode: "not_owner", message: "m") == ChatFailure(.rule(.notOwner), "m"))
        #expect(ChatFailure(reportedCode: "from_the_future", message: "m") == ChatFailure(.unavailable, "m"))
    }

    @Test func aRefusalRendersAsTheErrorObject() throws {
        let (head, _) = APIRefusal(ChatFailure(.rateLimited, "slow down")).response
        #expect(head.status.code == 429)
        #expect(head.headerFields[.retryAfter] == "1")
        #expect(head.headerFields[.contentType]?.hasPrefix("application/json") == true)
        #expect(APIRefusal(.invalid("x"), status: .unsupportedMediaType).response.0.status.code == 415)
    }
}
