import Etcd
import Foundation
import Logging

/// A real etcd (Debian's etcd-server) on free loopback ports with a data directory of its own,
/// for one test: started, waited for, and killed and removed by `stop()`.
public final class EtcdProcess: @unchecked Sendable {
    /// etcd's binary on PATH, if installed.
    public static let binary: String? = {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(directory)/etcd"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }()

    /// Whether the etcd tests run: etcd is installed, or `CHATLOG_REQUIRE_ETCD=1` (as in
    /// `make test`) makes its absence a failure rather than a skip.
    public static let enabled = binary != nil || ProcessInfo.processInfo.environment["CHATLOG_REQUIRE_ETCD"] == "1"

    let process = Process()
    let dataDirectory: String
    public let clientPort: Int
    public var url: String { "http://127.0.0.1:\(clientPort)" }

    /// A one-member etcd.
    public convenience init() throws {
        let member = try Member(name: "test")
        try self.init(member, cluster: [member])
    }

    /// The ports of one member of an etcd cluster, picked before any member starts.
    public struct Member: Sendable {
        public let name: String
        public let clientPort: Int
        public let peerPort: Int
        public init(name: String) throws {
            self.name = name
            clientPort = try freePort()
            peerPort = try freePort()
        }
        var peerURL: String { "http://127.0.0.1:\(peerPort)" }
    }

    /// Starts `member` of an etcd cluster made of `cluster` (a quorum of them must start).
    public init(_ member: Member, cluster: [Member]) throws {
        guard let binary = Self.binary else { throw EtcdTestError("etcd is not installed (apt-get install etcd-server)") }
        dataDirectory = NSTemporaryDirectory() + "chatlog-etcd-\(UUID().uuidString)"
        clientPort = member.clientPort
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--name", member.name, "--data-dir", dataDirectory,
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", member.peerURL, "--initial-advertise-peer-urls", member.peerURL,
            "--initial-cluster", cluster.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ","),
            "--initial-cluster-token", "chatlog-test-\(cluster[0].peerPort)",
            "--log-level", "error",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// Starts a cluster of `count` members.
    public static func cluster(of count: Int) throws -> [EtcdProcess] {
        let members = try (1...count).map { try Member(name: "m\($0)") }
        var started: [EtcdProcess] = []
        do {
            for member in members { started.append(try EtcdProcess(member, cluster: members)) }
        } catch {
            for process in started { process.stop() }
            throw error
        }
        return started
    }

    /// A client of this etcd (run it: `withEtcd` does).
    public func client(requestTimeout: Duration = .seconds(2)) throws -> EtcdClient {
        try EtcdClient(endpoints: EtcdEndpoints(url), requestTimeout: requestTimeout, logger: Logger(label: "etcd-test"))
    }

    /// Waits until etcd answers a read (at most 20 s).
    public func waitUntilReady(_ client: EtcdClient) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            do {
                _ = try await client.get("chatlog-test-ready")
                return
            } catch {
                guard ContinuousClock.now < deadline, process.isRunning else { throw EtcdTestError("etcd did not start: \(error)") }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Whether this member is the etcd cluster's raft leader now (asked with etcdctl; false when
    /// it cannot say).
    public var isRaftLeader: Bool {
        let etcdctl = Process()
        etcdctl.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        etcdctl.arguments = ["--endpoints", url, "endpoint", "status", "--write-out", "json"]
        etcdctl.environment = ["ETCDCTL_API": "3"]
        let output = Pipe()
        etcdctl.standardOutput = output
        etcdctl.standardError = FileHandle.nullDevice
        guard (try? etcdctl.run()) != nil else { return false }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        etcdctl.waitUntilExit()
        // [{"Endpoint": …, "Status": {"header": {"member_id": M, …}, "leader": L, …}}]
        guard let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]],
              let status = list.first?["Status"] as? [String: Any], let header = status["header"] as? [String: Any],
              let member = header["member_id"] as? NSNumber, let leader = status["leader"] as? NSNumber else { return false }
        return member == leader
    }

    /// Pauses etcd (SIGSTOP): it holds its connections but answers nothing, as when cut off.
    public func pause() { kill(process.processIdentifier, SIGSTOP) }

    /// Resumes a paused etcd (SIGCONT).
    public func resume() { kill(process.processIdentifier, SIGCONT) }

    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }
}

public struct EtcdTestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A loopback TCP port nothing listens on right now.
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw EtcdTestError("socket: \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw EtcdTestError("bind: \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Runs `body` with a fresh etcd and a running client of it; stops both afterwards.
public func withEtcd(_ body: (EtcdProcess, EtcdClient) async throws -> Void) async throws {
    let etcd = try EtcdProcess()
    defer { etcd.stop() }
    let client = try etcd.client()
    try await withThrowingTaskGroup { group in
        group.addTask { await client.run() }
        defer { client.close() }
        try await etcd.waitUntilReady(client)
        try await body(etcd, client)
    }
}
