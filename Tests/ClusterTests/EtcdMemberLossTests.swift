import Cluster
import Etcd
import EtcdTestSupport
import Logging
import Testing

/// Three etcd members, one killed: nothing visible to the cluster's nodes. (The member killed
/// is one etcd's raft does not lead: losing etcd's own leader makes etcd elect another, about
/// a second or two during which no lease is renewed; a leader may then stop acknowledging for
/// that long, which tools/chaos_cluster.py's etcd fault allows for.)
@Suite(.enabled(if: EtcdProcess.enabled, "etcd is not installed (apt-get install etcd-server)"), .serialized)
struct EtcdMemberLossTests {
    @Test func aLeaderKeepsItsLeadershipAndLeaseWhenOneOfThreeEtcdMembersDies() async throws {
        var members = try EtcdProcess.cluster(of: 3)
        defer { for member in members { member.stop() } }
        let ready = try EtcdEndpoints(members.map(\.url).joined(separator: ","))
        try await EtcdClient.with(endpoints: ready, requestTimeout: .seconds(1), logger: Logger(label: "etcd-test")) { etcd in
            try await members[0].waitUntilReady(etcd)
        }
        // The client talks to the first member given: make it one raft does not lead.
        if let follower = members.firstIndex(where: { !$0.isRaftLeader }) { members.swapAt(0, follower) }
        let endpoints = try EtcdEndpoints(members.map(\.url).joined(separator: ","))
        try await EtcdClient.with(endpoints: endpoints, requestTimeout: .seconds(1), logger: Logger(label: "etcd-test")) { etcd in
            let coordinator = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: "a", url: "http://a:3000")
            let node = ClusterNode(coordinator: coordinator, leaseTTL: 3, localEpoch: { 0 }, logger: Logger(label: "cluster-test"))
            let run = Task { try await node.run { _ in } }
            defer { run.cancel() }
            try await waitFor("a leads") { node.role == .leader(epoch: 1) }

            members[0].stop()  // the member the client was talking to
            // Several TTLs: the lease must be renewed through the other members all along.
            let watchUntil = ContinuousClock.now + .seconds(7)
            var lapses = 0
            while ContinuousClock.now < watchUntil {
                if !node.mayAcknowledge { lapses += 1 }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(lapses == 0, "the leader stopped acknowledging while etcd had a quorum")
            #expect(node.role == .leader(epoch: 1))
            #expect(try await coordinator.leader()?.record.epoch == 1)
        }
    }
}
