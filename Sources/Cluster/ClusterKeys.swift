import Etcd
import Foundation

/// Where a cluster keeps its state in etcd: every key under `/chatlog/<cluster>/`.
///
/// | key | value | written by |
/// |---|---|---|
/// | `id` | the cluster's id (a UUID), made by its first node | created once |
/// | `epoch` | the last leader epoch granted, in decimal | each new leader, in the transaction that makes it leader |
/// | `leader` | `LeaderRecord` (JSON), on the leader's lease | the leader; gone with its lease |
/// | `isr` | `InSyncSet` (JSON): who may lead next | the leader, only while `epoch` holds its own |
/// | `nodes/<name>` | `NodeRecord` (JSON), on the node's lease | each node, for as long as it runs |
public struct ClusterKeys: Sendable, Equatable {
    /// Cluster and node names: 1 to 64 of `a-z A-Z 0-9 . _ -`.
    public static let nameBytesMax = 64

    public let cluster: String
    public let prefix: String

    /// - Throws: `ClusterError.badName` for a name outside the allowed set.
    public init(cluster: String) throws(ClusterError) {
        try Self.check(name: cluster, what: "cluster")
        self.cluster = cluster
        prefix = "/chatlog/\(cluster)/"
    }

    public var id: String { prefix + "id" }
    public var epoch: String { prefix + "epoch" }
    public var leader: String { prefix + "leader" }
    public var inSyncSet: String { prefix + "isr" }
    public var nodes: String { prefix + "nodes/" }
    public var handover: String { prefix + "handover" }
    public func node(_ name: String) -> String { nodes + name }

    public static func check(name: String, what: String) throws(ClusterError) {
        let allowed = name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "-")
        }
        guard !name.isEmpty, name.utf8.count <= nameBytesMax, allowed else {
            throw .badName("\(what) name \"\(name)\": use 1 to \(nameBytesMax) of a-z A-Z 0-9 . _ -")
        }
    }
}

/// The leader's key: who leads, where to reach it, and under which epoch.
public struct LeaderRecord: Codable, Sendable, Equatable {
    public var node: String
    public var url: String
    public var epoch: UInt32

    public init(node: String, url: String, epoch: UInt32) {
        self.node = node
        self.url = url
        self.epoch = epoch
    }
}

/// The in-sync set (Kafka's ISR): the nodes that hold everything the leader of `epoch` may
/// have acknowledged, and so the only ones that may lead after it.
public struct InSyncSet: Codable, Sendable, Equatable {
    public var epoch: UInt32
    public var members: [String]

    public init(epoch: UInt32, members: [String]) {
        self.epoch = epoch
        self.members = members.sorted()
    }
}

/// A switchover under way: the leader of `epoch` hands leadership to `to`; until the key's
/// own short lease expires, no other node campaigns.
public struct HandoverRecord: Codable, Sendable, Equatable {
    public var to: String
    public var epoch: UInt32

    public init(to: String, epoch: UInt32) {
        self.to = to
        self.epoch = epoch
    }
}

/// A running node's key.
public struct NodeRecord: Codable, Sendable, Equatable {
    public var url: String

    public init(url: String) { self.url = url }
}

enum ClusterJSON {
    /// The `epoch` key's value (0 when the key does not exist).
    static func epoch(_ kv: EtcdKeyValue?) throws(ClusterError) -> UInt32 {
        guard let kv else { return 0 }
        guard let value = UInt32(kv.value) else { throw .corrupt("\(kv.key) holds \(kv.value.prefix(40)), not an epoch") }
        return value
    }

    static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Encoding these plain structs cannot fail.
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String, key: String) throws(ClusterError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw .corrupt("etcd key \(key) holds \(text.prefix(200)), not a \(type)")
        }
    }
}
