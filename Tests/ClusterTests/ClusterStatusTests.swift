import Cluster
import Etcd
import EtcdTestSupport
import Testing

@Suite(.enabled(if: EtcdProcess.enabled, "etcd is not installed (apt-get install etcd-server)"), .serialized)
struct ClusterStatusTests {
    @Test func theStatusShowsTheLeaderItsLeaseTheInSyncSetAndTheNodes() async throws {
        try await withEtcd { _, etcd in
            let a = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: "a", url: "http://a:3000")
            let b = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: "b", url: "http://b:3000")
            let leaseA = try await etcd.grantLease(ttl: 30), leaseB = try await etcd.grantLease(ttl: 30)
            _ = try await a.establishID(proposing: "id-1")
            try await a.register(lease: leaseA.id)
            try await b.register(lease: leaseB.id)
            #expect(try await a.campaign(lease: leaseA.id, localEpoch: 4) == .won(epoch: 5))
            #expect(try await a.setInSyncSet(["a", "b"], epoch: 5))

            let status = try await ClusterStatus.read(etcd: etcd, cluster: "chat")
            #expect(status.id == "id-1" && status.epoch == 5)
            #expect(status.leader == LeaderRecord(node: "a", url: "http://a:3000", epoch: 5))
            #expect((1...30).contains(try #require(status.leaderLeaseSeconds)))
            #expect(status.nodes.map(\.name) == ["a", "b"])
            #expect(status.nodes.map(\.role) == ["leader", "standby"])
            #expect(status.nodes.map(\.inSync) == [true, true])
            #expect(status.lines.contains("in sync (may lead next): a, b"))

            try await etcd.revoke(leaseA.id)  // the leader stops
            let after = try await ClusterStatus.read(etcd: etcd, cluster: "chat")
            #expect(after.leader == nil && after.leaderLeaseSeconds == nil)
            #expect(after.nodes.map(\.name) == ["b"])
            #expect(after.lines.contains("no leader"))
        }
    }

    @Test func aClusterEtcdDoesNotHoldIsNamed() async throws {
        try await withEtcd { _, etcd in
            await #expect(throws: ClusterError.notFound("nowhere")) { try await ClusterStatus.read(etcd: etcd, cluster: "nowhere") }
        }
    }
}
