import Etcd
import EtcdTestSupport
import Foundation
import Logging
import Testing

@Suite(.enabled(if: EtcdProcess.enabled, "etcd is not installed (apt-get install etcd-server)"), .serialized)
struct EtcdClientTests {
    @Test func keysAreWrittenReadListedAndDeleted() async throws {
        try await withEtcd { _, client in
            #expect(try await client.get("/c/leader") == nil)
            let first = try await client.put("/c/nodes/a", "A")
            let second = try await client.put("/c/nodes/b", "B")
            #expect(second > first)
            try await client.put("/d/other", "not under /c/")
            let node = try #require(try await client.get("/c/nodes/a"))
            #expect(node.value == "A" && node.createRevision == first && node.modRevision == first && node.lease == 0)
            let listed = try await client.list(prefix: "/c/nodes/")
            #expect(listed.values.map(\.key) == ["/c/nodes/a", "/c/nodes/b"])
            #expect(listed.revision >= second + 1)
            #expect(try await client.delete("/c/nodes/a") == 1)
            #expect(try await client.delete("/c/nodes/a") == 0)
            #expect(try await client.list(prefix: "/c/").values.map(\.value) == ["B"])
        }
    }

    @Test func onlyOneCreateOfAKeySucceedsAndTheLoserSeesTheWinner() async throws {
        try await withEtcd { _, client in
            let won = try await client.create("/c/leader", "node-1")
            #expect(won.created && won.existing == nil)
            let lost = try await client.create("/c/leader", "node-2")
            #expect(!lost.created)
            #expect(lost.existing?.value == "node-1")
            #expect(lost.existing?.createRevision == won.revision)
            #expect(try await client.get("/c/leader")?.value == "node-1")
        }
    }

    @Test func aCompareAndSetOnTheModRevisionFailsOnceAnotherWriteCameBetween() async throws {
        try await withEtcd { _, client in
            let revision = try await client.put("/c/isr", "[a,b]")
            try await client.put("/c/isr", "[a]")  // someone else's change
            let stale = try await client.transaction(if: [.modRevision("/c/isr", is: revision)], then: [.put("/c/isr", "[a,b,c]")])
            #expect(!stale.succeeded)
            #expect(try await client.get("/c/isr")?.value == "[a]")
            let current = try #require(try await client.get("/c/isr")).modRevision
            let fresh = try await client.transaction(if: [.modRevision("/c/isr", is: current)], then: [.put("/c/isr", "[a,c]")],
                                                     else: [.get("/c/isr")])
            #expect(fresh.succeeded && fresh.revision > current)
            #expect(try await client.get("/c/isr")?.value == "[a,c]")
            let byValue = try await client.transaction(if: [.value("/c/isr", is: "[a,c]")], then: [.delete("/c/isr")])
            #expect(byValue.succeeded)
            #expect(try await client.get("/c/isr") == nil)
        }
    }

    @Test func aKeyOnALeaseLivesWhileRenewedAndGoesWhenRevoked() async throws {
        try await withEtcd { _, client in
            let lease = try await client.grantLease(ttl: 5)
            #expect(lease.ttl == 5)
            try await client.put("/c/leader", "node-1", lease: lease.id)
            #expect(try await client.get("/c/leader")?.lease == lease.id)
            #expect(try await client.renew(lease.id) == 5)
            let left = try #require(try await client.timeToLive(lease.id))
            #expect((1...5).contains(left))
            try await client.revoke(lease.id)
            #expect(try await client.get("/c/leader") == nil)
            #expect(try await client.timeToLive(lease.id) == nil)
            await #expect(throws: EtcdError.leaseNotFound(lease.id)) { try await client.renew(lease.id) }
            try await client.revoke(lease.id)  // already gone: not an error
        }
    }

    @Test func aLeaseNotRenewedExpiresAndTakesItsKeys() async throws {
        try await withEtcd { _, client in
            // etcd raises a TTL below its minimum (about 2 s with default timing) to that minimum.
            let lease = try await client.grantLease(ttl: 1)
            #expect(lease.ttl >= 1)
            try await client.put("/c/leader", "node-1", lease: lease.id)
            let deadline = ContinuousClock.now + .seconds(Int(lease.ttl) + 10)
            while try await client.get("/c/leader") != nil {
                #expect(ContinuousClock.now < deadline, "the key outlived its lease")
                if ContinuousClock.now >= deadline { return }
                try await Task.sleep(for: .milliseconds(200))
            }
            await #expect(throws: EtcdError.leaseNotFound(lease.id)) { try await client.renew(lease.id) }
        }
    }

    @Test func aWatchSeesEveryChangeUnderItsPrefixInOrderFromItsRevision() async throws {
        try await withEtcd { _, client in
            let start = try await client.put("/c/leader", "node-1")
            try await client.put("/other", "unseen")
            try await client.put("/c/nodes/b", "B")
            try await client.delete("/c/leader")
            let seen = Seen()
            try await client.watch(prefix: "/c/", from: start) { events, revision in
                await seen.add(events, revision)
                return await seen.events.count < 3
            }
            let events = await seen.events
            #expect(events.map(\.kind) == [.put, .put, .delete])
            #expect(events.map(\.value.key) == ["/c/leader", "/c/nodes/b", "/c/leader"])
            #expect(events[0].value.value == "node-1" && events[0].value.modRevision == start)
            #expect(await seen.revision >= start + 3)
        }
    }

    @Test func aWatchFromACompactedRevisionSaysSo() async throws {
        try await withEtcd { etcd, client in
            let first = try await client.put("/c/a", "1")
            let last = try await client.put("/c/a", "2")
            try etcdctl(etcd, ["compaction", "\(last)"])
            await #expect(throws: EtcdError.compacted(last)) {
                try await client.watch(prefix: "/c/", from: first) { _, _ in true }
            }
        }
    }

    @Test func anUnreachableEtcdIsAnErrorWithinTheDeadlineNotAHang() async throws {
        let port = try freePort()
        let client = try EtcdClient(endpoints: EtcdEndpoints("http://127.0.0.1:\(port)"), requestTimeout: .milliseconds(500),
                                    logger: Logger(label: "etcd-test"))
        await withTaskGroup { group in
            group.addTask { await client.run() }
            defer { client.close() }
            let start = ContinuousClock.now
            await #expect {
                try await client.get("/c/leader")
            } throws: { error in
                (error as? EtcdError)?.isTransient == true
            }
            #expect(start.duration(to: .now) < .seconds(5))
        }
    }

    @Test func aRequestGoesToTheNextMemberWhenTheFirstIsDown() async throws {
        let etcd = try EtcdProcess()
        defer { etcd.stop() }
        let dead = try freePort()
        let client = try EtcdClient(endpoints: EtcdEndpoints("http://127.0.0.1:\(dead),\(etcd.url)"), requestTimeout: .seconds(1),
                                    logger: Logger(label: "etcd-test"))
        try await withThrowingTaskGroup { group in
            group.addTask { await client.run() }
            defer { client.close() }
            try await etcd.waitUntilReady(client)
            try await client.put("/c/leader", "node-1")
            #expect(try await client.get("/c/leader")?.value == "node-1")
        }
    }
}

actor Seen {
    var events: [EtcdEvent] = []
    var revision: Int64 = 0
    func add(_ events: [EtcdEvent], _ revision: Int64) {
        self.events += events
        self.revision = revision
    }
}

/// Runs etcdctl against the test's etcd (for what the client does not do itself).
func etcdctl(_ etcd: EtcdProcess, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["etcdctl", "--endpoints", etcd.url] + arguments
    process.environment = ["ETCDCTL_API": "3", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"]
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw EtcdTestError("etcdctl \(arguments) failed") }
}
