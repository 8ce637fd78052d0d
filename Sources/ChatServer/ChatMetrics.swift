import ChatModel
import Hummingbird
import HummingbirdSocketIO
import Journal
import Metrics
import NIOCore
import Prometheus
import Synchronization

/// The chat server's metrics, beside the journal's (`JournalMetrics`) and the Socket.IO layer's
/// (`socketio_slow_clients_disconnected_total`). Counters are kept as things happen; gauges
/// that describe state (connections, lag, journal size) are read when Prometheus scrapes, so
/// they cost nothing in between. Labels are bounded: transports, refusal codes, projections;
/// never a room or a user. docs/operations.md "Metrics" lists them all.
enum ChatMetrics {
    /// Events sent to sockets: one per recipient of each broadcast event or notice.
    static let deliveries = Metrics.Counter(label: "chat_deliveries_total")

    /// Commands and API requests refused, by code (`ChatFailure.Code.metricLabel`: a fixed
    /// set, so a label never comes from a client).
    static func refused(_ code: ChatFailure.Code) {
        let counter = refusedCounters.withLock { counters in
            if let counter = counters[code] { return counter }
            let counter = Metrics.Counter(label: "chat_commands_refused_total", dimensions: [("code", code.metricLabel)])
            counters[code] = counter
            return counter
        }
        counter.increment()
    }

    private static let refusedCounters = Mutex<[ChatFailure.Code: Metrics.Counter]>([:])

    /// Histogram buckets the process's metrics factory should use (see `bootstrap`).
    static var durationBuckets: [String: [Duration]] {
        Dictionary(uniqueKeysWithValues: JournalMetrics.latencyMetricLabels.map { ($0, JournalMetrics.latencyBuckets) })
    }
}

/// The Prometheus side: the process-wide registry that `GET /metrics` renders. `bootstrap`
/// makes it swift-metrics' backend, once per process (swift-metrics allows one bootstrap);
/// a server started without it (tests) answers `/metrics` from an empty registry.
public enum MetricsExport {
    public static let registry = PrometheusCollectorRegistry()
    private static let bootstrapped = Mutex(false)

    /// Makes `registry` the backend of swift-metrics, with the server's histogram buckets.
    /// Idempotent; call it before opening a journal.
    public static func bootstrap() {
        bootstrapped.withLock { done in
            guard !done else { return }
            var factory = PrometheusMetricsFactory(registry: registry)
            factory.durationHistogramBuckets = ChatMetrics.durationBuckets
            MetricsSystem.bootstrap(factory)
            done = true
            // Counters show from the first scrape, at zero.
            JournalMetrics.register()
            _ = (ChatMetrics.deliveries, SocketIOServer.slowClientsDisconnected)
        }
    }

    /// The gauges read at scrape time.
    struct Gauges {
        let pollingConnections = registry.makeGauge(descriptor: .init(metricName: "socketio_connections", unitName: "", helpText: "Open Socket.IO sessions by transport"), labels: [("transport", "polling")])
        let websocketConnections = registry.makeGauge(descriptor: .init(metricName: "socketio_connections", unitName: "", helpText: "Open Socket.IO sessions by transport"), labels: [("transport", "websocket")])
        let roomStateLag = registry.makeGauge(descriptor: .init(metricName: "chat_projection_lag_events", unitName: "", helpText: "Committed events a projection has not applied yet"), labels: [("projection", "room_state")])
        let historyLag = registry.makeGauge(descriptor: .init(metricName: "chat_projection_lag_events", unitName: "", helpText: "Committed events a projection has not applied yet"), labels: [("projection", "history")])
        let searchLag = registry.makeGauge(descriptor: .init(metricName: "chat_projection_lag_events", unitName: "", helpText: "Committed events a projection has not applied yet"), labels: [("projection", "search")])
        let searchFailed = registry.makeGauge(descriptor: .init(metricName: "chat_projection_failed", unitName: "", helpText: "1 once a projection's writer has stopped on a failure (until a restart)"), labels: [("projection", "search")])
        let journalBytes = registry.makeGauge(descriptor: .init(metricName: "journal_bytes", unitName: "", helpText: "Bytes in the journal's segments"))
        let journalSegments = registry.makeGauge(descriptor: .init(metricName: "journal_segments", unitName: "", helpText: "Segments in the journal, the active one included"))
        let journalOffset = registry.makeGauge(descriptor: .init(metricName: "journal_committed_offset", unitName: "", helpText: "The offset the next committed event will take"))
        let tcpConnections = registry.makeGauge(descriptor: .init(metricName: "http_connections", unitName: "", helpText: "TCP connections the HTTP server holds, of every kind"))
        let outboundBytes = registry.makeGauge(descriptor: .init(metricName: "socketio_outbound_bytes", unitName: "", helpText: "Bytes waiting to be written to clients, every outbound queue and polling buffer together"))
        let tcpConnectionsRefused = registry.makeGauge(descriptor: .init(metricName: "http_connections_refused", unitName: "", helpText: "Connections closed on arrival since start: the cap (--tcp-connections-max) was reached"))
    }
}

extension MetricsExport {
    /// `GET /metrics`: sets the gauges read at scrape time, then renders the registry in the
    /// Prometheus text format (version 0.0.4).
    static func scrape(_ gauges: Gauges, socketIO: SocketIOServer, journal: Journal, live: LiveRooms,
                       history: ProjectionWriter, search: ProjectionWriter, connections: AcceptedConnections) -> Response {
        gauges.tcpConnections.set(Int64(connections.count))
        gauges.outboundBytes.set(Int64(socketIO.outboundBudget.bytes))
        gauges.tcpConnectionsRefused.set(Int64(connections.refused))
        let sessions = socketIO.sessionCounts()
        gauges.pollingConnections.set(Int64(sessions.polling))
        gauges.websocketConnections.set(Int64(sessions.websocket))
        let committed = journal.committedOffset.value
        gauges.roomStateLag.set(Int64(committed - min(committed, live.position.value)))
        gauges.historyLag.set(Int64(committed - min(committed, history.position.value)))
        gauges.searchLag.set(Int64(committed - min(committed, search.position.value)))
        gauges.searchFailed.set(Int64(search.failure == nil ? 0 : 1))
        let storage = journal.storage
        gauges.journalBytes.set(storage.bytes)
        gauges.journalSegments.set(Int64(storage.segments))
        gauges.journalOffset.set(Int64(committed))
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }
}
