import ArgumentParser
import ChatServer

/// `chatlog serve`'s cluster options (docs/CLUSTER.md): with `--etcd`, leadership goes through
/// etcd and each node follows whoever leads.
struct ClusterServeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Cluster mode: etcd's client URLs, separated by commas (https ones checked against --tls-ca-file). Needs --cluster, --node, --advertise-url and --replication-secret-file; not --standby-of.", valueName: "urls"))
    var etcd: String?
    @Option(help: ArgumentHelp("Cluster mode: the cluster's name (its keys are under /chatlog/NAME/ in etcd).", valueName: "name"))
    var cluster: String?
    @Option(help: ArgumentHelp("Cluster mode: this node's name, unique in the cluster.", valueName: "name"))
    var node: String?
    @Option(help: ArgumentHelp("Cluster mode: this node's URL as the other nodes reach it, http://HOST:PORT.", valueName: "url"))
    var advertiseURL: String?
    @Option(help: ArgumentHelp("Cluster mode: the leader's lease in etcd, in whole seconds (2s to 60s): a dead leader is replaced within about this long.", valueName: "duration"))
    var leaseTTL = "2s"
    @Option(help: ArgumentHelp("Cluster mode: a standby that has not caught up for this long leaves the in-sync set (and may not lead until it is back); one whose process stopped leaves at once.", valueName: "duration"))
    var replicaLagTimeout = "10s"

    func validate() throws {
        let given = [cluster, node, advertiseURL].compactMap { $0 }
        if etcd == nil {
            guard given.isEmpty else { throw ValidationError("--cluster, --node and --advertise-url go with --etcd") }
            return
        }
        guard given.count == 3 else { throw ValidationError("--etcd needs --cluster, --node and --advertise-url") }
        guard let ttl = parseDuration(leaseTTL), ttl.components.attoseconds == 0 else {
            throw ValidationError("--lease-ttl is a whole number of seconds, such as 2s")
        }
        _ = ttl
        guard parseDuration(replicaLagTimeout) != nil else {
            throw ValidationError("--replica-lag-timeout is a number followed by ms, s or m, such as 10s")
        }
    }

    /// The settings, when cluster mode is asked for.
    var settings: ClusterSettings? {
        guard let etcd, let cluster, let node, let advertiseURL else { return nil }
        var settings = ClusterSettings(etcd: etcd, name: cluster, node: node, advertiseURL: advertiseURL)
        settings.leaseTTL = parseDuration(leaseTTL)?.components.seconds ?? 3
        settings.lagTimeout = parseDuration(replicaLagTimeout) ?? .seconds(10)
        return settings
    }
}
