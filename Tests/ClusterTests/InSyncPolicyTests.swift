import Cluster
import Testing

struct InSyncPolicyTests {
    let start = ContinuousClock.now
    typealias Progress = InSyncPolicy.Progress

    @Test func aStandbyJoinsOnlyOnceItHoldsEverythingTheLeaderHas() {
        let policy = InSyncPolicy(syncReplicas: 1, lagTimeout: .seconds(10))
        let behind = ["b": Progress(durable: 99, caughtUpAt: start)]
        #expect(policy.next(members: ["a"], leader: "a", leaderEnd: 100, standbys: behind, leadingSince: start, now: start) == nil)
        let caughtUp = ["b": Progress(durable: 100, caughtUpAt: start)]
        #expect(policy.next(members: ["a"], leader: "a", leaderEnd: 100, standbys: caughtUp, leadingSince: start, now: start) == ["a", "b"])
    }

    @Test func aStandbyThatCaughtUpAtItsLatestFetchJoinsAlthoughWritesGoOn() {
        let policy = InSyncPolicy(syncReplicas: 1, lagTimeout: .seconds(10))
        let following = ["b": Progress(durable: 97, caughtUpAt: start, caughtUp: true)]
        #expect(policy.next(members: ["a"], leader: "a", leaderEnd: 100, standbys: following, leadingSince: start, now: start) == ["a", "b"])
        // Not once its process is gone.
        #expect(policy.next(members: ["a"], leader: "a", leaderEnd: 100, standbys: following, leadingSince: start, now: start,
                            gone: ["b"]) == nil)
    }

    @Test func aMemberWhoseProcessStoppedLeavesAtOnceWhenBehind() {
        let policy = InSyncPolicy(syncReplicas: 1, lagTimeout: .seconds(10))
        let standbys = ["b": Progress(durable: 50, caughtUpAt: start), "c": Progress(durable: 100, caughtUpAt: start)]
        #expect(policy.next(members: ["a", "b", "c"], leader: "a", leaderEnd: 100, standbys: standbys, leadingSince: start,
                            now: start + .seconds(1), gone: ["b"]) == ["a", "c"])
        // One that holds everything stays: it can lose nothing by staying, and may be back.
        #expect(policy.next(members: ["a", "b", "c"], leader: "a", leaderEnd: 100, standbys: standbys, leadingSince: start,
                            now: start + .seconds(1), gone: ["c"]) == nil)
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
