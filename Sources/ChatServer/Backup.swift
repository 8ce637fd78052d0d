#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import Foundation
import Journal
import Logging
import NIOCore
import Projections
import Replication

/// `chatlog backup`: a consistent copy of a journal, made beside a running server, that is
/// itself a journal `chatlog serve` opens (docs/operations.md, "Backups").
///
/// The copy holds the source's retained segments byte for byte (sealed ones whole, the active
/// one up to a committed offset) and its room-state snapshot, which covers no more than the
/// copy holds: the snapshot is taken first and the segments copied up to at least the offset it
/// covers. A copy whose journal starts after offset 0 (retention deleted the start) needs that
/// snapshot to serve, and its History begins where its journal does, as a seeded standby's.
///
/// The copy is written into `DIR.partial` and renamed to `DIR` once complete and verified, so
/// a directory named as the backup is always a whole one.
public enum Backup {
    /// Where the copy comes from.
    public enum Source: Sendable {
        /// A running leader, through the replication protocol (its secret): up to its committed
        /// offset, or in a cluster its commit point (what no failover can remove).
        case server(ReplicationFollower.Configuration)
        /// A journal directory, read without its lock (a server may be writing it): up to the
        /// last whole batch of its active segment when that is read.
        case journal(String)
    }

    /// What a backup holds.
    public struct Summary: Sendable {
        /// Its journal's first offset (the source's oldest retained one) and end.
        public var firstOffset: Offset
        public var endOffset: Offset
        public var segments: Int
        public var bytes: Int64
        /// The offset its room-state snapshot covers (nil: none; the state is then rebuilt from
        /// offset 0).
        public var snapshotOffset: Offset?
    }

    /// Bytes of batches read or fetched at a time.
    public static let chunkBytes = 8 << 20
    /// How many times a copy is started again when the source's retention deletes a segment
    /// it was copying.
    public static let attempts = 3

    /// Copies `source` into `directory`, which must be missing or empty.
    public static func run(from source: Source, to directory: String, logger: Logger) async throws -> Summary {
        let destination = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        if let names = try? FileManager.default.contentsOfDirectory(atPath: destination), !names.isEmpty {
            throw BackupError.destinationNotEmpty(destination)
        }
        let partial = destination + ".partial"
        var attempt = 1
        while true {
            // What a backup that did not finish left.
            try? FileManager.default.removeItem(atPath: partial)
            do {
                let summary = try await copy(source, into: partial, logger: logger)
                try finish(partial, as: destination)
                return summary
            } catch let error as BackupError where error.isRace && attempt < attempts {
                logger.warning("the source's retention deleted what the backup was copying: starting again",
                               metadata: ["backup.attempt": "\(attempt + 1)", "error": "\(error)"])
                attempt += 1
            } catch {
                try? FileManager.default.removeItem(atPath: partial)
                throw error
            }
        }
    }

    // MARK: Copying

    private static func copy(_ source: Source, into directory: String, logger: Logger) async throws -> Summary {
        switch source {
        case .server(let configuration):
            let client = ReplicationProtocol.makeClient(trustRootsFile: configuration.secret.trustRootsFile)
            do {
                let summary = try await copy(from: configuration, client: client, into: directory, logger: logger)
                try await client.shutdown()
                return summary
            } catch {
                try? await client.shutdown()
                throw error
            }
        case .journal(let path):
            return try await copy(fromJournal: path, into: directory, logger: logger)
        }
    }

    private static func copy(from configuration: ReplicationFollower.Configuration, client: HTTPClient,
                             into directory: String, logger: Logger) async throws -> Summary {
        let snapshot: ByteBuffer
        let start: Offset
        do {
            (snapshot, start) = try await ReplicationFollower.snapshot(configuration: configuration)
        } catch ReplicationError.answered(_, 503, _, _) {
            throw BackupError.raced("the server's retention passed its room state while it answered")
        }
        let covered = try coveredOffset(snapshot, from: configuration.leaderURL)
        let journal = try makeJournal(directory, startingAt: start, logger: logger)
        return try await writing(journal, directory: directory, snapshot: snapshot, covered: covered) {
            var (header, raw) = try await fetch(configuration, client: client, from: start, last: nil)
            // Up to the committed offset when the copy began (in a cluster, the commit point),
            // and at least to the snapshot's.
            let target = max(covered, header.leaderCommitPoint ?? header.leaderCommitted)
            while true {
                guard let kept = raw.beginning(before: target) else {
                    throw BackupError.damaged("\(configuration.leaderURL) sent batches that do not frame")
                }
                if !kept.isEmpty { _ = try await journal.appendReplicated(kept) }
                if kept.nextOffset >= target { return }
                guard !kept.isEmpty else {
                    throw BackupError.damaged("\(configuration.leaderURL) sent nothing from \(kept.nextOffset), before its committed offset \(target)")
                }
                (header, raw) = try await fetch(configuration, client: client, from: kept.nextOffset, last: kept.lastHeader)
            }
        }
    }

    private static func fetch(_ configuration: ReplicationFollower.Configuration, client: HTTPClient, from: Offset,
                              last: BatchHeader?) async throws -> (FetchResponseHeader, RawBatches) {
        do {
            return try await ReplicationFollower.backupFetch(configuration, client: client, from: from, last: last)
        } catch ReplicationError.refused(410, _, _, _) {
            throw BackupError.raced("the server's retention deleted offset \(from) while it was copied")
        }
    }

    private static func copy(fromJournal source: String, into directory: String, logger: Logger) async throws -> Summary {
        let paths = ProjectionPaths(journalDirectory: source)
        // The snapshot first: the segments read after it hold at least what it covers.
        var snapshot: ByteBuffer?
        var covered: Offset?
        if let bytes = try? AtomicFile.read(paths.roomStateSnapshot) {
            do {
                covered = try RoomStateSnapshot.coveredOffset(bytes)
                snapshot = bytes
            } catch {
                logger.warning("the journal's room-state snapshot is not usable: the backup has none",
                               metadata: ["snapshot.path": "\(paths.roomStateSnapshot)", "error": "\(error)"])
            }
        }
        let segments = try JournalDirectory.segments(in: source)
        guard let first = segments.first else { throw BackupError.damaged("\(source) has no segment files") }
        if let covered, first.baseOffset > covered {
            // The server wrote a newer snapshot and retention went past this one meanwhile.
            throw BackupError.raced("the journal starts at \(first.baseOffset), after the snapshot read (\(covered))")
        }
        let journal = try makeJournal(directory, startingAt: first.baseOffset, logger: logger)
        return try await writing(journal, directory: directory, snapshot: snapshot, covered: covered) {
            var next = first.baseOffset
            for (index, segment) in segments.enumerated() {
                guard segment.baseOffset == next else {
                    throw BackupError.damaged("\(segment.path) starts at offset \(segment.baseOffset), the segment before it ends at \(next)")
                }
                let isActive = index == segments.count - 1
                var position = FilePosition.zero
                var size = segment.sizeBytes
                var lookedAgain = false
                while true {
                    let read: (batches: RawBatches, next: FilePosition, stopped: CorruptionReport?)
                    do {
                        read = try JournalDirectory.readRaw(segment, from: position, offset: next, to: FilePosition(size), maxBytes: chunkBytes)
                    } catch let error where !FileManager.default.fileExists(atPath: segment.path) {
                        throw BackupError.raced("\(segment.path) was deleted while it was copied (retention): \(error)")
                    }
                    if !read.batches.isEmpty { _ = try await journal.appendReplicated(read.batches) }
                    next = read.batches.nextOffset
                    position = read.next
                    if let stopped = read.stopped {
                        guard isActive else { throw BackupError.damaged("the journal is damaged: \(stopped) (chatlog journal verify says more)") }
                        // The active segment's last batch may be one the server is writing at
                        // this instant: it is whole a moment later.
                        if !lookedAgain {
                            lookedAgain = true
                            try await Task.sleep(for: .milliseconds(100))
                            var info = stat()
                            if stat(segment.path, &info) == 0 { size = Int64(info.st_size) }
                            continue
                        }
                        switch stopped.kind {
                        case .truncatedHeader, .truncatedPayload:
                            // A batch cut short at the end (a server that died writing it, or
                            // damage to a length): left out, as recovery would cut it.
                            logger.warning("the active segment ends in an incomplete batch: the backup stops before it, where recovery would cut it",
                                           metadata: ["journal.segment": "\(segment.path)", "journal.position": "\(stopped.position)"])
                        default:
                            throw BackupError.damaged("the journal is damaged: \(stopped) (chatlog journal verify says more)")
                        }
                        break
                    }
                    if read.batches.isEmpty || position.value >= size { break }
                }
            }
        }
    }

    // MARK: The copy's journal

    /// An empty journal at `directory` whose first segment starts at `start`, taking batches
    /// copied byte for byte.
    private static func makeJournal(_ directory: String, startingAt start: Offset, logger: Logger) throws -> Journal {
        if start > .zero { try Journal.create(directory: directory, startingAt: start) }
        // The copy's opening and closing are not news to the person running the backup.
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        let journal = try Journal.open(directory: directory, logger: quiet)
        journal.setFollowing(true)
        return journal
    }

    /// Runs `body`, which appends the copy's batches to `journal`, then closes the journal,
    /// writes the snapshot (when it covers no more than the copy holds) and begins History where
    /// the journal does.
    private static func writing(_ journal: Journal, directory: String, snapshot: ByteBuffer?, covered: Offset?,
                                _ body: () async throws -> Void) async throws -> Summary {
        do {
            try await body()
        } catch {
            await journal.close()
            throw error
        }
        let (first, end) = (journal.earliestOffset, journal.committedOffset)
        await journal.close()
        let paths = ProjectionPaths(journalDirectory: directory)
        var snapshotOffset: Offset?
        if let snapshot, let covered, covered <= end, covered >= first || first == .zero {
            try FileManager.default.createDirectory(atPath: paths.directory, withIntermediateDirectories: true)
            try AtomicFile.write(snapshot, to: paths.roomStateSnapshot)
            snapshotOffset = covered
        }
        if first > .zero {
            // Retention deleted the start: the room state cannot be rebuilt from the journal.
            guard snapshotOffset != nil else {
                throw BackupError.damaged("the journal starts at offset \(first) and has no room-state snapshot between there and \(end): its rooms cannot be restored")
            }
            try HistoryProjection(path: paths.history).begin(at: first)
        }
        let report = try JournalDirectory.verify(directory: directory)
        guard report.isClean else {
            throw BackupError.damaged("the copy does not verify: \(report.problems.map(\.description).joined(separator: "; "))")
        }
        return Summary(firstOffset: first, endOffset: end, segments: report.segments, bytes: report.bytes, snapshotOffset: snapshotOffset)
    }

    /// Renames the finished copy to its name and makes the rename durable.
    private static func finish(_ partial: String, as destination: String) throws {
        if FileManager.default.fileExists(atPath: destination) { try FileManager.default.removeItem(atPath: destination) }
        try FileManager.default.moveItem(atPath: partial, toPath: destination)
        let parent = (destination as NSString).deletingLastPathComponent
        let descriptor = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY)
        if descriptor >= 0 {
            fsync(descriptor)
            close(descriptor)
        }
    }

    private static func coveredOffset(_ snapshot: ByteBuffer, from url: String) throws -> Offset {
        do {
            return try RoomStateSnapshot.coveredOffset(snapshot)
        } catch {
            throw BackupError.damaged("\(url) sent a room-state snapshot that does not check out: \(error)")
        }
    }
}

/// Why a backup failed.
public enum BackupError: Error, CustomStringConvertible {
    /// The destination holds files: a backup never writes over anything.
    case destinationNotEmpty(String)
    /// The source's retention deleted what was being copied (the backup starts again).
    case raced(String)
    /// The source, or the copy, is not a whole journal.
    case damaged(String)

    var isRace: Bool {
        if case .raced = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .destinationNotEmpty(let path): "\(path) is not empty: give a new directory (a backup never writes over files)"
        case .raced(let why): "the copy could not keep up with the source's retention: \(why)"
        case .damaged(let why): why
        }
    }
}
