import Foundation
import GRPCCore

/// A change to a watched key.
public struct EtcdEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case put
        case delete
    }

    public var kind: Kind
    /// The key after the change (for a delete: the key, with an empty value, at the delete's
    /// revision).
    public var value: EtcdKeyValue
}

extension EtcdClient {
    /// Watches every key under `prefix` from `revision` on (inclusive), calling `body` with each
    /// batch of changes and the store revision it brings the watcher to, in order. Returns when
    /// `body` returns false; throws when the stream breaks (`.unavailable`: watch again from the
    /// revision after the last one seen) or etcd has compacted `revision` away (`.compacted`:
    /// read the keys again, then watch from there).
    ///
    /// The watch stays on the member it started on (when that one fails, the next watch and
    /// request go to another); no deadline applies to it.
    public func watch(
        prefix: String,
        from revision: Int64,
        _ body: @escaping @Sendable ([EtcdEvent], Int64) async throws -> Bool
    ) async throws(EtcdError) {
        let request = Etcdserverpb_WatchRequest.with {
            $0.createRequest = .with {
                $0.key = Data(prefix.utf8)
                $0.rangeEnd = Self.rangeEnd(ofPrefix: prefix)
                $0.startRevision = revision
                $0.progressNotify = true
            }
        }
        var options = CallOptions.defaults
        options.waitForReady = false
        let index = preferred.load(ordering: .relaxed)
        let grpc = members[index].grpc
        do {
            try await Etcdserverpb_Watch.Client(wrapping: grpc).watch(options: options) { writer in
                try await writer.write(request)
                try await EtcdClient.holdOpen()
            } onResponse: { response in
                for try await message in response.messages {
                    if message.canceled {
                        if message.compactRevision > 0 { throw EtcdError.compacted(message.compactRevision) }
                        throw EtcdError.unavailable("etcd cancelled the watch: \(message.cancelReason)")
                    }
                    if message.created && message.events.isEmpty { continue }
                    let events = message.events.map { event in
                        EtcdEvent(kind: event.type == .delete ? .delete : .put, value: EtcdKeyValue(event.kv))
                    }
                    guard try await body(events, message.header.revision) else { return }
                }
                throw EtcdError.unavailable("the watch stream ended")
            }
        } catch {
            let failure = EtcdError.from(error)
            // The next watch (and request) goes to another member.
            if failure.isTransient {
                _ = preferred.compareExchange(expected: index, desired: (index + 1) % members.count, ordering: .relaxed)
            }
            throw failure
        }
    }

    /// Keeps a stream's sending side open until the call ends (gRPC cancels the producer once
    /// the response handler returns): etcd ends a watch or keep-alive whose client closed it.
    static func holdOpen() async throws {
        do {
            try await Task.sleep(for: .seconds(86_400 * 365))
        } catch is CancellationError {
            return
        }
    }
}
