/// A token bucket: `rate` tokens a second, at most `burst` held. A value type.
struct TokenBucket: Sendable {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var updated: ContinuousClock.Instant

    init(rate: Double, burst: Double, now: ContinuousClock.Instant = .now) {
        self.rate = rate
        self.burst = burst
        tokens = burst
        updated = now
    }

    /// The tokens held at `now`: those left, refilled at `rate` since the last take.
    private func tokens(at now: ContinuousClock.Instant) -> Double {
        let elapsed = now - updated
        return min(burst, tokens + elapsed.inSeconds * rate)
    }

    /// Whether the bucket would be full at `now` (its owner has been idle long enough).
    func isFull(now: ContinuousClock.Instant = .now) -> Bool {
        tokens(at: now) >= burst
    }

    /// Takes a token if there is one.
    mutating func take(now: ContinuousClock.Instant = .now) -> Bool {
        tokens = tokens(at: now)
        updated = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
