import Foundation
import GRPCCore

/// One condition of a transaction, on one key.
public struct EtcdCondition: Sendable, Equatable {
    public enum Test: Sendable, Equatable {
        /// The key does not exist (its create revision is 0).
        case absent
        /// The key was last changed at this revision.
        case modRevision(Int64)
        /// The key holds this value.
        case value(String)
    }

    public var key: String
    public var test: Test

    public static func absent(_ key: String) -> EtcdCondition { EtcdCondition(key: key, test: .absent) }
    public static func modRevision(_ key: String, is revision: Int64) -> EtcdCondition {
        EtcdCondition(key: key, test: .modRevision(revision))
    }
    public static func value(_ key: String, is value: String) -> EtcdCondition { EtcdCondition(key: key, test: .value(value)) }

    var message: Etcdserverpb_Compare {
        .with {
            $0.key = Data(key.utf8)
            $0.result = .equal
            switch test {
            case .absent:
                $0.target = .create
                $0.createRevision = 0
            case .modRevision(let revision):
                $0.target = .mod
                $0.modRevision = revision
            case .value(let value):
                $0.target = .value
                $0.value = Data(value.utf8)
            }
        }
    }
}

/// One step of a transaction's branch.
public enum EtcdOperation: Sendable, Equatable {
    case put(String, String, lease: Int64 = 0)
    case delete(String)
    /// Reads a key; its value comes back in `EtcdTransactionResult.values`.
    case get(String)

    var message: Etcdserverpb_RequestOp {
        .with {
            switch self {
            case .put(let key, let value, let lease):
                $0.requestPut = .with {
                    $0.key = Data(key.utf8)
                    $0.value = Data(value.utf8)
                    $0.lease = lease
                }
            case .delete(let key):
                $0.requestDeleteRange = .with { $0.key = Data(key.utf8) }
            case .get(let key):
                $0.requestRange = .with { $0.key = Data(key.utf8) }
            }
        }
    }
}

public struct EtcdTransactionResult: Sendable, Equatable {
    /// Whether every condition held (and so the `then` branch ran).
    public var succeeded: Bool
    /// The store's revision after the transaction: the revision of its writes when it wrote.
    public var revision: Int64
    /// What the branch's `get`s read, in order (a missing key is absent from the list).
    public var values: [EtcdKeyValue]
}

extension EtcdClient {
    /// etcd's transaction: if every condition holds, `then` runs, else `otherwise`, atomically.
    ///
    /// A transaction that times out on one member is retried on the next, so it may have taken
    /// effect once already: write transactions whose outcome the caller can recognise (a key
    /// that holds the caller's own lease or value), and read it back when in doubt.
    public func transaction(
        if conditions: [EtcdCondition],
        then success: [EtcdOperation],
        else failure: [EtcdOperation] = []
    ) async throws(EtcdError) -> EtcdTransactionResult {
        let request = Etcdserverpb_TxnRequest.with {
            $0.compare = conditions.map(\.message)
            $0.success = success.map(\.message)
            $0.failure = failure.map(\.message)
        }
        let options = unaryOptions
        let response = try await withMember { try await Etcdserverpb_KV.Client(wrapping: $0).txn(request, options: options) }
        let values = response.responses.flatMap { op -> [EtcdKeyValue] in
            if case .responseRange(let range)? = op.response { return range.kvs.map(EtcdKeyValue.init) }
            return []
        }
        return EtcdTransactionResult(succeeded: response.succeeded, revision: response.header.revision, values: values)
    }

    /// Creates `key` only if it does not exist; when it does, returns what it holds.
    public func create(_ key: String, _ value: String, lease: Int64 = 0) async throws(EtcdError) -> (created: Bool, revision: Int64, existing: EtcdKeyValue?) {
        let result = try await transaction(if: [.absent(key)], then: [.put(key, value, lease: lease)], else: [.get(key)])
        return (result.succeeded, result.revision, result.values.first)
    }
}
