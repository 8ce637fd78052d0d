import Metrics

/// The journal's metrics (swift-metrics; the server exports them through swift-prometheus, see
/// docs/operations.md "Metrics"). Created once, on first use: a process that bootstraps a metrics backend
/// does so before it opens a journal. No labels: one journal per process.
public enum JournalMetrics {
    /// Events committed (durable, with the default durability): appended here or copied from a
    /// leader.
    static let eventsCommitted = Counter(label: "journal_events_appended_total")
    /// From an append's admission to its commit (group commit's wait, write and fsync).
    static let commitLatency = Metrics.Timer(label: "journal_commit_seconds")
    /// One `fsync` of the active segment.
    static let fsync = Metrics.Timer(label: "journal_fsync_seconds")

    /// Creates the metrics now, so a scrape shows them (at zero) before anything happened.
    public static func register() {
        _ = (eventsCommitted, commitLatency, fsync)
    }

    /// Histogram buckets for both latencies: group commit on a local disk takes tens of
    /// microseconds to a few milliseconds, a struggling disk seconds.
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]
    public static let latencyMetricLabels = ["journal_commit_seconds", "journal_fsync_seconds"]
}

extension Metrics.Timer {
    func recordDuration(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`: for rates, logs and reports.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
