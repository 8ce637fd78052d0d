import Cluster
import Etcd
import EtcdTestSupport
import Foundation
import Testing

@Suite(.enabled(if: EtcdProcess.enabled, "etcd is not installed (apt-get install etcd-server)"), .serialized)
struct ClusterMembershipTests {
    func directory() throws -> String {
        let path = NSTemporaryDirectory() + "chatlog-cluster-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func theFileSaysWhichClusterAJournalBelongsTo() throws {
        let path = try directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try ClusterMembership.read(directory: path) == nil)
        try ClusterMembership(cluster: "chat", id: "id-1").write(directory: path)
        #expect(try String(contentsOfFile: path + "/cluster", encoding: .utf8) == "cluster chat\nid id-1\n")
        #expect(try ClusterMembership.read(directory: path) == ClusterMembership(cluster: "chat", id: "id-1"))
        #expect(!FileManager.default.fileExists(atPath: path + "/cluster.tmp"))
    }

    @Test func aFileThatCannotBeWrittenIsAnError() {
        #expect {
            try ClusterMembership(cluster: "chat", id: "id-1").write(directory: "/nonexistent-\(UUID().uuidString)")
        } throws: { error in
            if case .io(let why)? = error as? ClusterError { return why.contains("cannot create") }
            return false
        }
    }

    @Test(arguments: ["", "cluster chat\n", "cluster chat\nid x", "name chat\nid x\n", "cluster chat\nid x\nmore\n",
                      String(repeating: "x", count: 600)])
    func aDamagedFileIsNamed(_ content: String) throws {
        let path = try directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try content.write(toFile: path + "/cluster", atomically: true, encoding: .utf8)
        #expect(throws: ClusterError.self) { try ClusterMembership.read(directory: path) }
    }

    @Test func aJournalJoinsOnceAndIsRefusedByAnotherCluster() async throws {
        try await withEtcd { _, etcd in
            let path = try directory()
            defer { try? FileManager.default.removeItem(atPath: path) }
            let chat = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: "a", url: "http://a:3000")
            let id = try await chat.join(journalDirectory: path)
            #expect(try ClusterMembership.read(directory: path) == ClusterMembership(cluster: "chat", id: id))
            #expect(try await chat.join(journalDirectory: path) == id)  // again: the same

            let other = try ClusterCoordinator(etcd: etcd, cluster: "other", node: "a", url: "http://a:3000")
            await #expect(throws: ClusterError.journalOfCluster("chat")) { try await other.join(journalDirectory: path) }

            // A second cluster that reused the name "chat" (its id in etcd is another).
            try await etcd.put("/chatlog/chat/id", "someone-else")
            await #expect(throws: ClusterError.wrongCluster(journal: id, etcd: "someone-else")) {
                try await chat.join(journalDirectory: path)
            }
            #expect(try ClusterMembership.read(directory: path) == ClusterMembership(cluster: "chat", id: id))
        }
    }

    @Test func aFreshJournalJoinsAnExistingClusterAndAnEtcdStartedAnewLearnsTheIdFromTheJournal() async throws {
        try await withEtcd { _, etcd in
            let first = try directory(), second = try directory()
            defer {
                try? FileManager.default.removeItem(atPath: first)
                try? FileManager.default.removeItem(atPath: second)
            }
            let a = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: "a", url: "http://a:3000")
            let b = try ClusterCoordinator(etcd: etcd, cluster: "chat", node: "b", url: "http://b:3000")
            let id = try await a.join(journalDirectory: first)
            #expect(try await b.join(journalDirectory: second) == id)
            try await etcd.delete("/chatlog/chat/id")  // etcd's data lost
            #expect(try await a.join(journalDirectory: first) == id)
            #expect(try await etcd.get("/chatlog/chat/id")?.value == id)
        }
    }

    @Test func aLeaseTTLBelowEtcdsMinimumIsRefused() async throws {
        try await withEtcd { _, etcd in
            await #expect {
                _ = try await LeaseKeeper(etcd: etcd, ttl: 1)
            } throws: { error in
                guard case .leaseTTLBelowMinimum(1, let minimum)? = error as? ClusterError else { return false }
                return minimum > 1 && (error as? ClusterError)?.description.contains("minimum of \(minimum) s") == true
            }
        }
    }
}
