import Cluster
import Etcd
import EtcdTestSupport
import Foundation
import Testing

@Suite(.enabled(if: EtcdProcess.enabled, "etcd is not installed (apt-get install etcd-server)"), .serialized)
struct ClusterCoordinatorTests {
    func coordinator(_ etcd: EtcdClient, _ node: String, cluster: String = "chat") throws -> ClusterCoordinator {
        try ClusterCoordinator(etcd: etcd, cluster: cluster, node: node, url: "http://\(node):3000")
    }

    @Test func theFirstNodeMakesTheClusterIdAndTheOthersLearnIt() async throws {
        try await withEtcd { _, etcd in
            let a = try coordinator(etcd, "a"), b = try coordinator(etcd, "b")
            #expect(try await a.establishID(proposing: "id-a") == "id-a")
            #expect(try await b.establishID(proposing: "id-b") == "id-a")
            let other = try coordinator(etcd, "a", cluster: "other")
            #expect(try await other.establishID(proposing: "id-c") == "id-c")
        }
    }

    @Test func twoRunningNodesCannotShareAName() async throws {
        try await withEtcd { _, etcd in
            let first = try await etcd.grantLease(ttl: 10), second = try await etcd.grantLease(ttl: 10)
            let a = try coordinator(etcd, "a")
            try await a.register(lease: first.id)
            try await a.register(lease: first.id)  // again on its own lease: fine
            await #expect(throws: ClusterError.duplicateNode("a")) { try await a.register(lease: second.id) }
            #expect(try await a.nodes().map(\.name) == ["a"])
            try await etcd.revoke(first.id)  // the first stopped: the name is free
            try await a.register(lease: second.id)
            #expect(try await a.nodes().map(\.record.url) == ["http://a:3000"])
        }
    }

    @Test(arguments: ["", "a/b", "a b", String(repeating: "x", count: 65), "ü"])
    func aBadNameIsRefused(_ name: String) throws {
        #expect(throws: ClusterError.self) { try ClusterKeys(cluster: name) }
        #expect(throws: ClusterError.self) { try ClusterKeys.check(name: name, what: "node") }
    }

    @Test func oneNodeWinsAnElectionAndTheOtherLearnsWhoLeads() async throws {
        try await withEtcd { _, etcd in
            let a = try coordinator(etcd, "a"), b = try coordinator(etcd, "b")
            let leaseA = try await etcd.grantLease(ttl: 10), leaseB = try await etcd.grantLease(ttl: 10)
            #expect(try await a.campaign(lease: leaseA.id, localEpoch: 0) == .won(epoch: 1))
            #expect(try await b.campaign(lease: leaseB.id, localEpoch: 0) == .led(by: LeaderRecord(node: "a", url: "http://a:3000", epoch: 1)))
            // Asking again on the same lease (a retried request) answers the same.
            #expect(try await a.campaign(lease: leaseA.id, localEpoch: 0) == .won(epoch: 1))
            #expect(try await a.inSyncSet()?.set == InSyncSet(epoch: 1, members: ["a"]))
        }
    }

    @Test func theNextLeaderTakesANewEpochAboveEtcdsAndItsJournals() async throws {
        try await withEtcd { _, etcd in
            let a = try coordinator(etcd, "a"), b = try coordinator(etcd, "b")
            let leaseA = try await etcd.grantLease(ttl: 10)
            // A journal that led under epoch 6 before the cluster existed.
            #expect(try await a.campaign(lease: leaseA.id, localEpoch: 6) == .won(epoch: 7))
            #expect(try await a.setInSyncSet(["a", "b"], epoch: 7))
            try await etcd.revoke(leaseA.id)  // a dies: its lease goes, and its key with it
            #expect(try await b.leader() == nil)
            let leaseB = try await etcd.grantLease(ttl: 10)
            #expect(try await b.campaign(lease: leaseB.id, localEpoch: 7) == .won(epoch: 8))
            // The set keeps its members under the new epoch.
            #expect(try await b.inSyncSet()?.set == InSyncSet(epoch: 8, members: ["a", "b"]))
        }
    }

    @Test func aNodeOutsideTheInSyncSetMayNotLead() async throws {
        try await withEtcd { _, etcd in
            let a = try coordinator(etcd, "a"), c = try coordinator(etcd, "c")
            let leaseA = try await etcd.grantLease(ttl: 10)
            #expect(try await a.campaign(lease: leaseA.id, localEpoch: 0) == .won(epoch: 1))
            #expect(try await a.setInSyncSet(["a", "b"], epoch: 1))
            try await etcd.revoke(leaseA.id)
            let leaseC = try await etcd.grantLease(ttl: 10)
            #expect(try await c.campaign(lease: leaseC.id, localEpoch: 1) == .ineligible(InSyncSet(epoch: 1, members: ["a", "b"])))
            #expect(try await c.leader() == nil)
            #expect(try await etcd.get("/chatlog/chat/epoch")?.value == "1")
        }
    }

    @Test func aReplacedLeaderCannotChangeTheInSyncSet() async throws {
        try await withEtcd { _, etcd in
            let a = try coordinator(etcd, "a"), b = try coordinator(etcd, "b")
            let leaseA = try await etcd.grantLease(ttl: 10)
            #expect(try await a.campaign(lease: leaseA.id, localEpoch: 0) == .won(epoch: 1))
            #expect(try await a.setInSyncSet(["a", "b"], epoch: 1))
            try await etcd.revoke(leaseA.id)  // a is cut off long enough to lose its lease
            let leaseB = try await etcd.grantLease(ttl: 10)
            #expect(try await b.campaign(lease: leaseB.id, localEpoch: 1) == .won(epoch: 2))
            // a comes back still believing it leads under epoch 1 and tries to drop b.
            #expect(try await !a.setInSyncSet(["a"], epoch: 1))
            #expect(try await b.inSyncSet()?.set == InSyncSet(epoch: 2, members: ["a", "b"]))
        }
    }

    @Test func aHandoverLetsOnlyItsTargetCampaignUntilItsLeaseExpires() async throws {
        try await withEtcd { _, etcd in
            let a = try coordinator(etcd, "a"), b = try coordinator(etcd, "b"), c = try coordinator(etcd, "c")
            let leaseA = try await etcd.grantLease(ttl: 10)
            #expect(try await a.campaign(lease: leaseA.id, localEpoch: 0) == .won(epoch: 1))
            #expect(try await a.setInSyncSet(["a", "b", "c"], epoch: 1))
            // Only to a member of the in-sync set, and only under the leader's own epoch.
            #expect(try await a.announceHandover(to: "d", epoch: 1) == nil)
            #expect(try await a.announceHandover(to: "b", epoch: 7) == nil)
            #expect(try await a.announceHandover(to: "b", epoch: 1) != nil)
            try await a.resign(lease: leaseA.id)
            let leaseC = try await etcd.grantLease(ttl: 10), leaseB = try await etcd.grantLease(ttl: 10)
            #expect(try await c.campaign(lease: leaseC.id, localEpoch: 1) == .heldBack(HandoverRecord(to: "b", epoch: 1)))
            #expect(try await b.campaign(lease: leaseB.id, localEpoch: 1) == .won(epoch: 2))
            #expect(try await etcd.get(b.keys.handover) == nil, "the winning campaign removes the handover")
            // A handover whose target never campaigns holds the others back only until its
            // lease goes (revoked here; it expires after handoverTTL).
            #expect(try await b.setInSyncSet(["a", "b", "c"], epoch: 2))
            let again = try #require(try await b.announceHandover(to: "a", epoch: 2))
            try await b.resign(lease: leaseB.id)
            #expect(try await c.campaign(lease: leaseC.id, localEpoch: 2) == .heldBack(HandoverRecord(to: "a", epoch: 2)))
            try await etcd.revoke(again)
            #expect(try await c.campaign(lease: leaseC.id, localEpoch: 2) == .won(epoch: 3))
        }
    }

    @Test func concurrentCampaignsElectExactlyOneLeaderPerEpoch() async throws {
        try await withEtcd { _, etcd in
            let names = ["a", "b", "c", "d", "e"]
            var leases: [String: Int64] = [:]
            for name in names { leases[name] = try await etcd.grantLease(ttl: 10).id }
            let outcomes = try await withThrowingTaskGroup { group in
                for name in names {
                    let node = try coordinator(etcd, name), lease = leases[name] ?? 0
                    group.addTask { (name, try await node.campaign(lease: lease, localEpoch: 0)) }
                }
                return try await group.reduce(into: [(String, ClusterCoordinator.Campaign)]()) { $0.append($1) }
            }
            let winners = outcomes.filter { if case .won = $0.1 { true } else { false } }
            #expect(winners.count == 1)
            #expect(winners.first?.1 == .won(epoch: 1))
            let leader = try #require(try await coordinator(etcd, "x").leader())
            #expect(leader.record.node == winners.first?.0)
        }
    }

    @Test func resigningFreesLeadershipOnlyForItsOwnLease() async throws {
        try await withEtcd { _, etcd in
            let a = try coordinator(etcd, "a")
            let lease = try await etcd.grantLease(ttl: 10), other = try await etcd.grantLease(ttl: 10)
            #expect(try await a.campaign(lease: lease.id, localEpoch: 0) == .won(epoch: 1))
            try await a.resign(lease: other.id)  // not the lease that leads: nothing happens
            #expect(try await a.leader()?.record.node == "a")
            try await a.resign(lease: lease.id)
            #expect(try await a.leader() == nil)
        }
    }

    @Test func damagedStateInEtcdIsNamed() async throws {
        try await withEtcd { _, etcd in
            try await etcd.put("/chatlog/chat/leader", "not json")
            await #expect(throws: ClusterError.self) { try await coordinator(etcd, "a").leader() }
            try await etcd.delete("/chatlog/chat/leader")
            try await etcd.put("/chatlog/chat/epoch", "seven")
            let lease = try await etcd.grantLease(ttl: 10)
            await #expect {
                try await coordinator(etcd, "a").campaign(lease: lease.id, localEpoch: 0)
            } throws: { error in
                if case .corrupt(let why)? = error as? ClusterError { return why.contains("seven") }
                return false
            }
        }
    }

    @Test func noEpochIsGrantedPastTheLargestABatchCarries() async throws {
        try await withEtcd { _, etcd in
            let lease = try await etcd.grantLease(ttl: 10)
            await #expect(throws: ClusterError.epochExhausted) {
                try await coordinator(etcd, "a").campaign(lease: lease.id, localEpoch: .max)
            }
            #expect(try await etcd.get("/chatlog/chat/leader") == nil)
        }
    }
}
