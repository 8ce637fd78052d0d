#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import NIOCore
import Synchronization

extension Journal {
    /// Makes an empty journal in `directory` whose first record will get offset `base`: a
    /// standby seeded from a leader that no longer retains offset 0 starts where the leader's
    /// oldest segment does.
    /// - Throws: `.unsupportedJournal` when the directory already holds segments; `.locked`; `.io`.
    public static func create(directory: String, startingAt base: Offset) throws(JournalError) {
        try FileSystem.makeDirectory(directory)
        let lockFile = try acquireLock(directory: directory)
        defer { flock(lockFile.descriptor, LOCK_UN) }
        try checkMeta(directory: directory)
        guard try FileSystem.list(directory).allSatisfy({ JournalFiles.baseOffset(ofSegment: $0) == nil }) else {
            throw .unsupportedJournal(directory: directory, reason: "it already holds segments")
        }
        _ = try Segment.create(base: base, directory: directory)
    }
}

/// What `Journal.truncate` cut.
public struct TailCut: Sendable, Equatable {
    /// The first offset cut (the journal's new end).
    public var from: Offset
    /// The end the journal had.
    public var to: Offset
    public var bytes: Int64
    /// Where the cut bytes were kept.
    public var brokenCopies: [String]
}

extension Journal {
    /// Cuts a journal that no process has open back to `offset`, which must be where a batch
    /// starts: a former leader, or a standby ahead of its new leader, drops what the new
    /// leader never had before it follows. The cut bytes are kept (`<segment>.log.<position>.broken`,
    /// as recovery keeps a torn tail), segments wholly past the cut are removed, and the
    /// leader epochs that began past it are forgotten.
    /// - Parameter roundingDown: when `offset` is inside a batch, cut from that batch's start
    ///   (else that is an error).
    /// - Returns: nil when the journal ends at or before `offset` (nothing to cut).
    /// - Throws: `.locked` (a process has it open), `.notBatchBoundary`, `.corrupt`, `.io`.
    public static func truncate(directory: String, to requested: Offset, roundingDown: Bool = false,
                                logger: Logger) throws(JournalError) -> TailCut? {
        var offset = requested
        let lockFile = try acquireLock(directory: directory)
        defer { flock(lockFile.descriptor, LOCK_UN) }
        try checkMeta(directory: directory)
        let bases = try FileSystem.list(directory).compactMap(JournalFiles.baseOffset(ofSegment:)).sorted()
        var cut = TailCut(from: offset, to: offset, bytes: 0, brokenCopies: [])

        // First find the cut (and check it is at a batch boundary), then change anything.
        struct Plan {
            let base: Offset
            let path: String
            let file: FileHandle
            let size: Int64
            /// Where the cut starts in this segment; 0 for a segment wholly past it.
            let position: FilePosition
        }
        var plans: [Plan] = []
        for base in bases.reversed() {
            let path = JournalFiles.join(directory, JournalFiles.segmentName(base))
            let file = try FileHandle.open(path, flags: O_RDWR)
            let size = try file.size()
            var scanner = SegmentScanner(file: file, from: .zero, to: FilePosition(size), expectedOffset: base)
            var position = FilePosition.zero
            while let (header, at, _) = try scanner.nextBatch() {
                if header.baseOffset < offset && header.nextOffset > offset {
                    guard roundingDown else { throw .notBatchBoundary(requested: offset, batchBase: header.baseOffset) }
                    offset = header.baseOffset
                    cut.from = offset
                }
                if header.baseOffset < offset { position = at.advanced(by: header.totalBytes) }
                cut.to = max(cut.to, header.nextOffset)
            }
            plans.append(Plan(base: base, path: path, file: file, size: size, position: position))
            if base < offset || base == bases.first { break }
        }
        for plan in plans {
            if plan.base >= offset && plan.base != bases.first {
                // Wholly past the cut: set aside, then removed.
                if let aside = try Segment.setAside(plan.file, path: plan.path, from: .zero, size: plan.size, directory: directory) {
                    cut.brokenCopies.append(aside.path)
                    cut.bytes += aside.bytes
                }
                try FileSystem.remove(plan.path)
                try FileSystem.remove(JournalFiles.join(directory, JournalFiles.indexName(plan.base)))
            } else if plan.position.value < plan.size {
                let aside = try Segment.cutTail(of: plan.file, path: plan.path, at: plan.position, size: plan.size, directory: directory)
                cut.brokenCopies.append(aside.path)
                cut.bytes += aside.bytes
                // Rebuilt from the segment at the next open.
                try FileSystem.remove(JournalFiles.join(directory, JournalFiles.indexName(plan.base)))
            }
        }
        try FileSystem.syncDirectory(directory)
        var epochs = try LeaderEpochs.load(directory: directory)
        let before = epochs
        epochs.truncate(to: offset)
        if epochs != before { try epochs.save(directory: directory) }
        guard cut.bytes > 0 || epochs != before else { return nil }
        logger.warning("journal cut back", metadata: [
            "journal.directory": "\(directory)", "journal.cut_from": "\(cut.from)", "journal.cut_to": "\(cut.to)",
            "journal.bytes_cut": "\(cut.bytes)", "journal.broken_copies": "\(cut.brokenCopies.joined(separator: ", "))",
        ])
        return cut
    }
}
