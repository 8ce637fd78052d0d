import ChatAPI
import ChatModel
import Foundation
import HTTPTypes
import Testing

@testable import ChatServer

@Suite struct OpenAPIDocumentTests {
    /// The served document is the one the committed code was generated from, and that is the
    /// document in the repository: edit openapi.yaml without tools/generate-openapi.sh and this fails.
    @Test func theGeneratedCodeIsUpToDateWithTheDocument() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let document = try String(contentsOf: repository.appendingPathComponent("Sources/ChatAPI/openapi.yaml"), encoding: .utf8)
        #expect(OpenAPIDocument.yaml + "\n" == document, "run tools/generate-openapi.sh and commit what it writes")
    }
}

@Suite struct APIOperationsTableTests {
    /// `ChatHTTPAPI.operations` (which answers 405 for the other methods) lists exactly the
    /// document's paths and methods.
    @Test func theTableOfMethodsIsTheDocuments() {
        var documented: [String: Set<String>] = [:]
        var path: String?
        for line in OpenAPIDocument.yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
                documented[path!] = []
            } else if !line.hasPrefix("  "), !line.isEmpty {
                path = nil
            } else if let current = path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"),
                      ["get", "post", "put", "patch", "delete"].contains(line.trimmingCharacters(in: .whitespaces).dropLast()) {
                documented[current]?.insert(line.trimmingCharacters(in: .whitespaces).dropLast().uppercased())
            }
        }
        let table = Dictionary(uniqueKeysWithValues: ChatHTTPAPI.operations.map { ($0.path, Set($0.methods.map(\.rawValue))) })
        #expect(!documented.isEmpty)
        #expect(table == documented)
    }
}

@Suite struct ChatFailureTests {
    /// Every code has the status README "HTTP API" gives it, and every rule code is a code.
    @Test func everyRefusalCodeHasTheStatusTheDocumentGivesIt() {
        let expected: [String: Int] = [
            "invalid_payload": 400, "invalid_text": 400, "invalid_name": 400, "invalid_client_message_id": 400, "not_private": 400,
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

@Suite struct APIRateLimiterTests {
    @Test func eachUserHasABurstThenTheRate() throws {
        let limiter = APIRateLimiter(rate: 10, burst: 3)
        let alice = try #require(UserID("alice")), bob = try #require(UserID("bob"))
        let start = ContinuousClock.now
        for _ in 0..<3 { #expect(limiter.take(for: alice, now: start)) }
        #expect(!limiter.take(for: alice, now: start))
        #expect(limiter.take(for: bob, now: start), "buckets are per user")
        #expect(limiter.take(for: alice, now: start + .milliseconds(100)), "a tenth of a second earns one at 10/s")
        #expect(!limiter.take(for: alice, now: start + .milliseconds(100)))
    }

    @Test func theMapOfBucketsIsBounded() throws {
        let limiter = APIRateLimiter(rate: 1, burst: 1)
        let start = ContinuousClock.now
        for index in 0..<(APIRateLimiter.usersMax + 10) {
            _ = limiter.take(for: try #require(UserID("user\(index)")), now: start)
        }
        #expect(limiter.count <= APIRateLimiter.usersMax)
    }
}
