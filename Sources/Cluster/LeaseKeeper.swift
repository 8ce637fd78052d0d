import Etcd
import Synchronization

/// Keeps one etcd lease alive and says, by this process's own monotonic clock, until when the
/// lease certainly still exists on etcd's side.
///
/// etcd starts a lease's time to live when a grant or renewal reaches it, which is after this
/// process sent it. So a renewal sent at `t` (here) that succeeds keeps the lease at least
/// until `t + ttl` in real time; `validUntil` is that minus `margin`, which absorbs the rate
/// at which the two machines' clocks may drift apart over one TTL (far below 1 % on any
/// working machine; the margin is a quarter of the TTL). Until `validUntil` no other node can
/// hold a key this lease holds; after it, this node must act as if it had lost the lease. A
/// process paused (SIGSTOP) across `validUntil` sees, when it resumes, that it has passed,
/// before it acknowledges anything: the check reads the clock, not a flag a timer sets.
public final class LeaseKeeper: Sendable {
    public let etcd: EtcdClient
    public let lease: EtcdLease
    /// How long before the lease's earliest expiry this node stops relying on it.
    public let margin: Duration
    /// How often it renews: a third of the TTL, so that two renewals may fail before it matters.
    public let interval: Duration
    let validity: Mutex<ContinuousClock.Instant>

    /// Grants a lease of `ttl` seconds.
    /// - Throws: `.leaseTTLBelowMinimum` when etcd lengthened it (it does so below its minimum,
    ///   about 1.5 election timeouts), after revoking it: the TTL a node runs with is the one
    ///   its operator chose; `.etcd` when etcd does not answer.
    public init(etcd: EtcdClient, ttl: Int64) async throws(ClusterError) {
        let sent = ContinuousClock.now
        let lease: EtcdLease
        do {
            lease = try await etcd.grantLease(ttl: ttl)
        } catch {
            throw .etcd(error)
        }
        guard lease.ttl == ttl else {
            try? await etcd.revoke(lease.id)
            throw .leaseTTLBelowMinimum(requested: ttl, minimum: lease.ttl)
        }
        self.etcd = etcd
        self.lease = lease
        let granted = Duration.seconds(lease.ttl)
        margin = granted / 4
        interval = granted / 3
        validity = Mutex(sent + granted - granted / 4)
    }

    /// Until when the lease certainly exists (by this process's monotonic clock).
    public var validUntil: ContinuousClock.Instant { validity.withLock { $0 } }

    /// Whether the lease certainly still exists now.
    public var isValid: Bool { ContinuousClock.now < validUntil }

    /// Renews once; on success moves `validUntil` on.
    /// - Throws: `.leaseNotFound` once the lease is gone (for good); `.unavailable` when etcd did
    ///   not answer (`validUntil` stays where it was).
    public func renew() async throws(EtcdError) {
        let sent = ContinuousClock.now
        let ttl = try await etcd.renew(lease.id)
        let until = sent + .seconds(ttl) - margin
        validity.withLock { $0 = max($0, until) }
    }

    /// Renews every `interval` until cancelled or the lease is gone; a renewal etcd does not
    /// answer (a member gone, etcd electing its own leader) is retried after `retryDelay`, not a
    /// whole interval later, so a short outage of etcd costs no lapse of `isValid`.
    /// - Throws: `.leaseNotFound` when etcd says the lease has expired or was revoked.
    public func run() async throws(EtcdError) {
        while !Task.isCancelled {
            var renewed = true
            do {
                try await renew()
            } catch .leaseNotFound(let id) {
                validity.withLock { $0 = .now }
                throw .leaseNotFound(id)
            } catch {
                renewed = false
            }
            do { try await Task.sleep(for: renewed ? interval : min(interval, Self.retryDelay)) } catch { return }
        }
    }

    /// How soon a renewal etcd did not answer is tried again.
    public static let retryDelay: Duration = .milliseconds(100)

    /// Revokes the lease (its keys go at once), for a clean stop.
    public func revoke() async throws(EtcdError) {
        validity.withLock { $0 = .now }
        try await etcd.revoke(lease.id)
    }
}
