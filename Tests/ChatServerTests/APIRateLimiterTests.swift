import ChatAPI
import ChatModel
import Foundation
import HTTPTypes
import Testing
@testable import ChatServer

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
