import Cluster
import Etcd
import EtcdTestSupport
import Logging
import Testing

/// etcd unreachable (paused) and back.
@Suite(.enabled(if: EtcdProcess.enabled, "etcd is not installed (apt-get install etcd-server)"), .serialized)
struct EtcdDownTests {
    @Test func aLeaderStopsAcknowledgingWhileEtcdIsDownAndLeadsAgainWhenItIsBack() async throws {
        try await withEtcd { etcdProcess, _ in
            // A client with a short deadline of its own, as a node would use.
            try await EtcdClient.with(endpoints: EtcdEndpoints(etcdProcess.url), requestTimeout: .milliseconds(500),
                                      logger: Logger(label: "etcd-test")) { etcd in
                let coordinator = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: "a", url: "http://a:3000")
                let node = ClusterNode(coordinator: coordinator, leaseTTL: 2, localEpoch: { 0 }, logger: Logger(label: "cluster-test"))
                let run = Task { try await node.run { _ in } }
                defer { run.cancel() }
                try await waitFor("a leads") { node.mayAcknowledge }
                #expect(node.role == .leader(epoch: 1))

                etcdProcess.pause()
                let paused = ContinuousClock.now
                try await waitFor("a stops acknowledging", within: .seconds(5)) { !node.mayAcknowledge }
                // It stopped before the lease's TTL had passed since the pause began.
                #expect(paused.duration(to: .now) < .seconds(2))

                etcdProcess.resume()
                try await waitFor("a acknowledges again", within: .seconds(15)) { node.mayAcknowledge }
                guard case .leader(let epoch) = node.role else {
                    Issue.record("not leading after etcd came back: \(node.role)")
                    return
                }
                #expect(epoch >= 1)
                #expect(try await coordinator.leader()?.record == LeaderRecord(node: "a", url: "http://a:3000", epoch: epoch))
            }
        }
    }
}
