import Cluster
import Testing

struct InSyncPolicyTests {
    let start = ContinuousClock.now
    typealias Progress = InSyncPolicy.Progress

    @Test func everyMemberMustHoldAnEventBeforeItCommits() {
        let policy = InSyncPolicy(syncReplicas: 1, lagTimeout: .seconds(10))
        let standbys = ["b": Progress(durable: 90, caughtUpAt: start), "c": Progress(durable: 70, caughtUpAt: start)]
        #expect(policy.committable(members: ["a", "b", "c"], leader: "a", leaderEnd: 100, standbys: standbys) == 70)
        #expect(policy.committable(members: ["a", "b"], leader: "a", leaderEnd: 100, standbys: standbys) == 90)
        // A member the leader has not heard from holds nothing it can count.
        #expect(policy.committable(members: ["a", "b", "d"], leader: "a", leaderEnd: 100, standbys: standbys) == 0)
        // Never beyond the leader's own end.
        #expect(policy.committable(members: ["a", "b"], leader: "a", leaderEnd: 80, standbys: standbys) == 80)
    }

    @Test func aSetSmallerThanSyncReplicasCommitsNothing() {
        let standbys = ["b": Progress(durable: 100, caughtUpAt: start)]
        #expect(InSyncPolicy(syncReplicas: 1, lagTimeout: .seconds(10))
            .committable(members: ["a"], leader: "a", leaderEnd: 100, standbys: standbys) == nil)
        #expect(InSyncPolicy(syncReplicas: 2, lagTimeout: .seconds(10))
            .committable(members: ["a", "b"], leader: "a", leaderEnd: 100, standbys: standbys) == nil)
        // With no synchronous replicas required, the leader alone commits what it has.
        #expect(InSyncPolicy(syncReplicas: 0, lagTimeout: .seconds(10))
            .committable(members: ["a"], leader: "a", leaderEnd: 100, standbys: [:]) == 100)
    }

    @Test func aStandbyJoinsOnlyOnceItHoldsEverythingTheLeaderHas() {
        let policy = InSyncPolicy(syncReplicas: 1, lagTimeout: .seconds(10))
        let behind = ["b": Progress(durable: 99, caughtUpAt: start)]
        #expect(policy.next(members: ["a"], leader: "a", leaderEnd: 100, standbys: behind, leadingSince: start, now: start) == nil)
        let caughtUp = ["b": Progress(durable: 100, caughtUpAt: start)]
        #expect(policy.next(members: ["a"], leader: "a", leaderEnd: 100, standbys: caughtUp, leadingSince: start, now: start) == ["a", "b"])
    }

    @Test func aMemberLeavesOnlyAfterLaggingForTheTimeout() {
        let policy = InSyncPolicy(syncReplicas: 1, lagTimeout: .seconds(10))
        let lagging = ["b": Progress(durable: 50, caughtUpAt: start), "c": Progress(durable: 100, caughtUpAt: start)]
        #expect(policy.next(members: ["a", "b", "c"], leader: "a", leaderEnd: 100, standbys: lagging, leadingSince: start,
                            now: start + .seconds(9)) == nil)
        #expect(policy.next(members: ["a", "b", "c"], leader: "a", leaderEnd: 100, standbys: lagging, leadingSince: start,
                            now: start + .seconds(11)) == ["a", "c"])
    }

    @Test func aMemberNeverHeardFromLeavesAfterTheTimeoutFromWhenLeadershipBegan() {
        let policy = InSyncPolicy(syncReplicas: 0, lagTimeout: .seconds(10))
        let began = start + .seconds(100)
        #expect(policy.next(members: ["a", "b"], leader: "a", leaderEnd: 100, standbys: [:], leadingSince: began,
                            now: began + .seconds(5)) == nil)
        #expect(policy.next(members: ["a", "b"], leader: "a", leaderEnd: 100, standbys: [:], leadingSince: began,
                            now: began + .seconds(11)) == ["a"])
    }

    @Test func theLeaderIsAlwaysAMember() {
        let policy = InSyncPolicy(syncReplicas: 0, lagTimeout: .seconds(10))
        #expect(policy.next(members: ["b"], leader: "a", leaderEnd: 100, standbys: ["b": Progress(durable: 100, caughtUpAt: start)],
                            leadingSince: start, now: start) == ["a", "b"])
    }
}
