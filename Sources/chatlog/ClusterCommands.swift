import ArgumentParser
import Cluster
import Etcd
import Foundation
import Logging

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Look at a cluster coordinated through etcd.",
        subcommands: [Status.self]
    )

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what etcd holds of a cluster: its leader and epoch, the lease's time left, the in-sync set and the running nodes.",
            discussion: """
                Reads the cluster's keys under /chatlog/NAME/ in etcd (docs/CLUSTER.md). Each \
                node's durable offset and lag are the node's own to say: `chatlog replication \
                status --server NODE-URL`. Exits 2 when etcd does not answer within 2 s per \
                member, 1 when it holds no cluster of that name (or damaged keys).

                Example:
                  chatlog cluster status --etcd http://10.0.0.1:2379,http://10.0.0.2:2379 --cluster chat
                """
        )

        @Option(help: ArgumentHelp("etcd's client URLs, separated by commas.", valueName: "urls")) var etcd: String
        @Option(help: ArgumentHelp("The cluster's name.", valueName: "name")) var cluster: String
        @Option(name: .customLong("tls-ca-file"), help: ArgumentHelp("PEM certificate authorities to check an https etcd against (default: the system's).", valueName: "file"))
        var tlsCAFile: String?
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text

        func run() async throws {
            let status: ClusterStatus
            do {
                let endpoints = try EtcdEndpoints(etcd)
                status = try await EtcdClient.with(endpoints: endpoints, trustRootsFile: tlsCAFile, logger: Logger(label: "chatlog.cluster")) { client in
                    try await ClusterStatus.read(etcd: client, cluster: cluster)
                }
            } catch ClusterError.etcd(let error) where error.isTransient {
                throw CommandFailure.cannotRun("\(error)")
            } catch let error as EtcdError where error.isTransient {
                throw CommandFailure.cannotRun("\(error)")
            } catch {
                throw CommandFailure.refused("\(error)")
            }
            if format == .json {
                print(jsonLine(status))
                return
            }
            for line in status.lines { print(line) }
        }
    }
}
