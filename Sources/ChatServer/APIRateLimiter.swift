import ChatModel
import Synchronization

/// The HTTP API's rate limit: a token bucket per user, at the socket events' rate and burst.
/// At most `usersMax` buckets are kept; past that, full ones (users idle for a while) are
/// dropped, and if none is, the map starts over (a burst's worth of leniency, never memory
/// growth). Thread-safe (a mutex).
final class APIRateLimiter: Sendable {
    let rate: Double
    let burst: Double
    static let usersMax = 10_000
    private let buckets = Mutex<[UserID: TokenBucket]>([:])

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// How many users have a bucket.
    var count: Int { buckets.withLock { $0.count } }

    func take(for user: UserID, now: ContinuousClock.Instant = .now) -> Bool {
        buckets.withLock { buckets in
            if buckets[user] == nil, buckets.count >= Self.usersMax {
                buckets = buckets.filter { !$0.value.isFull(now: now) }
                if buckets.count >= Self.usersMax { buckets.removeAll(keepingCapacity: true) }
            }
            return buckets[user, default: TokenBucket(rate: rate, burst: burst, now: now)].take(now: now)
        }
    }
}
