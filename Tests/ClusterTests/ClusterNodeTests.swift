import Cluster
import Etcd
import EtcdTestSupport
import Logging
import Testing

@Suite(.enabled(if: EtcdProcess.enabled, "etcd is not installed (apt-get install etcd-server)"), .serialized)
struct ClusterNodeTests {
    actor Roles {
        var seen: [ClusterRole] = []
        func add(_ role: ClusterRole) { seen.append(role) }
    }

    func node(_ etcd: EtcdClient, _ name: String) throws -> ClusterNode {
        let coordinator = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: name, url: "http://\(name):3000")
        return ClusterNode(coordinator: coordinator, leaseTTL: 2, localEpoch: { 0 }, logger: Logger(label: "cluster-test"))
    }

    @Test func oneOfTwoNodesLeadsAndTheOtherTakesOverWhenItStops() async throws {
        try await withEtcd { _, etcd in
            let a = try node(etcd, "a"), b = try node(etcd, "b")
            let rolesA = Roles(), rolesB = Roles()
            let runA = Task { try await a.run { await rolesA.add($0) } }
            try await waitFor("a leads") { a.role == .leader(epoch: 1) }
            #expect(a.mayAcknowledge)
            let runB = Task { try await b.run { await rolesB.add($0) } }
            defer { runB.cancel() }
            try await waitFor("b follows a") { b.role == .follower(LeaderRecord(node: "a", url: "http://a:3000", epoch: 1)) }
            #expect(!b.mayAcknowledge)
            // b joins the in-sync set (the leader's job, once b has caught up).
            #expect(try await a.coordinator.setInSyncSet(["a", "b"], epoch: 1))

            let stopped = ContinuousClock.now
            runA.cancel()
            _ = await runA.result
            try await waitFor("b leads under a new epoch") { b.role == .leader(epoch: 2) }
            // A clean stop revokes the lease: no waiting for its TTL.
            #expect(stopped.duration(to: .now) < .seconds(2))
            #expect(b.mayAcknowledge && !a.mayAcknowledge)
            #expect(await rolesA.seen.first == .leader(epoch: 1))
            #expect(await rolesB.seen.last == .leader(epoch: 2))
        }
    }

    @Test func aLeaderThatLosesItsLeaseStopsAcknowledgingAndLeadsAgainUnderANewEpoch() async throws {
        try await withEtcd { _, etcd in
            let a = try node(etcd, "a")
            let roles = Roles()
            let run = Task { try await a.run { await roles.add($0) } }
            defer { run.cancel() }
            try await waitFor("a leads") { a.role == .leader(epoch: 1) }
            let lease = try #require(try await a.coordinator.leader()?.key.lease)
            try await etcd.revoke(lease)  // as if etcd had expired it
            try await waitFor("a leads again") { a.role == .leader(epoch: 2) }
            #expect(await roles.seen == [.leader(epoch: 1), .leaderless, .leader(epoch: 2)])
            #expect(a.mayAcknowledge)
        }
    }

    @Test func aSecondRunningNodeWithTheSameNameIsRefused() async throws {
        try await withEtcd { _, etcd in
            let first = try node(etcd, "a"), second = try node(etcd, "a")
            let run = Task { try await first.run { _ in } }
            defer { run.cancel() }
            try await waitFor("the first leads") { first.role == .leader(epoch: 1) }
            await #expect(throws: ClusterError.duplicateNode("a")) { try await second.run { _ in } }
        }
    }
}

extension ClusterNodeTests {
    @Test func aNodeRestartedAfterACrashWaitsForItsOldLeaseToExpireAndLeadsAgain() async throws {
        try await withEtcd { _, etcd in
            // The crashed incarnation: its name and leadership on a lease nobody renews.
            let old = try await etcd.grantLease(ttl: 2)
            let crashed = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: "a", url: "http://a:3000")
            try await crashed.register(lease: old.id)
            #expect(try await crashed.campaign(lease: old.id, localEpoch: 0) == .won(epoch: 1))

            let restarted = try node(etcd, "a")
            let run = Task { try await restarted.run { _ in } }
            defer { run.cancel() }
            try await waitFor("the restarted node leads under a new epoch") { restarted.role == .leader(epoch: 2) }
            #expect(restarted.mayAcknowledge)
        }
    }
}
