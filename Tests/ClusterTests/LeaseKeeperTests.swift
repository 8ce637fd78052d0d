import Cluster
import Etcd
import EtcdTestSupport
import Testing

@Suite(.enabled(if: EtcdProcess.enabled, "etcd is not installed (apt-get install etcd-server)"), .serialized)
struct LeaseKeeperTests {
    @Test func aRenewedLeaseStaysValidAndItsValidityEndsBeforeEtcdCouldExpireIt() async throws {
        try await withEtcd { _, etcd in
            let before = ContinuousClock.now
            let keeper = try await LeaseKeeper(etcd: etcd, ttl: 3)
            #expect(keeper.isValid)
            // Never later than the grant's send time + TTL − margin.
            #expect(keeper.validUntil <= before + .seconds(keeper.lease.ttl) - keeper.margin + .milliseconds(1))
            let first = keeper.validUntil
            try await Task.sleep(for: .milliseconds(300))
            try await keeper.renew()
            #expect(keeper.validUntil > first)
            #expect(try await etcd.timeToLive(keeper.lease.id) != nil)
        }
    }

    @Test func aLeaseLeftUnrenewedIsNoLongerValidBeforeEtcdDropsIt() async throws {
        try await withEtcd { _, etcd in
            let keeper = try await LeaseKeeper(etcd: etcd, ttl: 2)
            try await etcd.put("/chatlog/chat/leader", "x", lease: keeper.lease.id)
            // As a paused process: nothing renews.
            while keeper.isValid { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await etcd.get("/chatlog/chat/leader") != nil, "validity ended after etcd had already dropped the key")
        }
    }

    @Test func runKeepsTheLeaseAliveAndStopsWhenItIsRevoked() async throws {
        try await withEtcd { _, etcd in
            let keeper = try await LeaseKeeper(etcd: etcd, ttl: 2)
            let running = Task { try await keeper.run() }
            try await Task.sleep(for: .seconds(3))  // longer than the TTL
            #expect(keeper.isValid)
            #expect(try await etcd.timeToLive(keeper.lease.id) != nil)
            try await etcd.revoke(keeper.lease.id)  // as if it had expired
            await #expect(throws: EtcdError.leaseNotFound(keeper.lease.id)) { try await running.value }
            #expect(!keeper.isValid)
        }
    }
}
