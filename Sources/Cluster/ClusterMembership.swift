#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The journal directory's record of the cluster it belongs to: the file `cluster` (FORMAT.md
/// §5), written once when a node first joins, so that the journal is never served as part of
/// another cluster (another name, or another cluster that reused the name).
public struct ClusterMembership: Sendable, Equatable {
    public static let fileName = "cluster"
    /// The file is a few dozen bytes; anything longer is not ours.
    static let bytesMax = 512

    public var cluster: String
    public var id: String

    public init(cluster: String, id: String) {
        self.cluster = cluster
        self.id = id
    }

    /// The directory's membership, or nil when it has none (a journal never in a cluster).
    /// - Throws: `.corrupt` when the file is not as `write` makes it.
    public static func read(directory: String) throws(ClusterError) -> ClusterMembership? {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            guard !FileManager.default.fileExists(atPath: path) else { throw .corrupt("\(path) cannot be read") }
            return nil
        }
        let text = String(decoding: data.prefix(bytesMax + 1), as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard data.count <= bytesMax, lines.count == 3, lines[2].isEmpty,
              lines[0].hasPrefix("cluster "), lines[1].hasPrefix("id ") else {
            throw .corrupt("\(path) is not a chatlog cluster file (expected \"cluster NAME\\nid ID\\n\")")
        }
        return ClusterMembership(cluster: String(lines[0].dropFirst("cluster ".count)), id: String(lines[1].dropFirst("id ".count)))
    }

    /// Writes the file atomically and durably: a temporary file, fsync, rename, fsync of the
    /// directory (FORMAT.md §7).
    public func write(directory: String) throws(ClusterError) {
        let path = directory + "/" + Self.fileName
        let temporary = path + ".tmp"
        let bytes = Array("cluster \(cluster)\nid \(id)\n".utf8)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .io("cannot write \(path): \(reason)")
        }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            defer { close(directoryFD) }
            guard fsync(directoryFD) == 0 else { throw .io("cannot sync \(directory): \(String(cString: strerror(errno)))") }
        }
    }
}

extension ClusterCoordinator {
    /// Joins the journal in `directory` to this cluster: learns (or, as the first node, makes)
    /// the cluster's id, and checks it against the journal's own record, which it writes on
    /// the first join. Nothing is written when a check fails.
    /// - Throws: `.journalOfCluster` when the journal belongs to a cluster of another name;
    ///   `.wrongCluster` when to one of this name but another id (a second cluster that reused
    ///   the name, or a journal copied from elsewhere).
    public func join(journalDirectory directory: String) async throws(ClusterError) -> String {
        let recorded = try ClusterMembership.read(directory: directory)
        if let recorded, recorded.cluster != keys.cluster { throw .journalOfCluster(recorded.cluster) }
        let id = try await establishID(proposing: recorded?.id ?? UUID().uuidString.lowercased())
        if let recorded {
            guard recorded.id == id else { throw .wrongCluster(journal: recorded.id, etcd: id) }
        } else {
            try ClusterMembership(cluster: keys.cluster, id: id).write(directory: directory)
        }
        return id
    }
}
