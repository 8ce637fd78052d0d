import Testing

/// Waits until `condition` holds; records an issue naming `what` if it does not within `limit`.
func waitFor(_ what: Comment, within limit: Duration = .seconds(10), _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("not within \(limit): \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
