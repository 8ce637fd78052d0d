#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore

/// One segment (FORMAT.md §2, §3): `<base>.log`, its batches, and `<base>.index`, its sparse
/// index of batch positions. Every operation on a segment's files is here: creating one,
/// loading one at open (scanning it, cutting a damaged tail, rebuilding its index), locating
/// an offset in it, and setting bytes aside as `.broken` copies before a cut.
///
/// As the journal's shared state knows it: its sizes cover committed batches only, so readers
/// never see bytes the writer has not committed. A value; its file handle is shared.
struct Segment: Sendable {
    let baseOffset: Offset
    let file: FileHandle
    var index: SegmentIndex
    /// Committed bytes: readers read below this position.
    var sizeBytes: Int64
    /// The offset after the segment's last committed record.
    var nextOffset: Offset
    /// Append time of the newest record, nil while empty. Drives age retention.
    var lastTimestampMs: Int64?
}

extension Segment {
    /// The index entry at or before `offset`: where a read of it starts scanning.
    func locate(_ offset: Offset) -> IndexEntry {
        index.lookup(offset)
    }

    /// Copies the bytes of `file` from `position` to `size` aside, as `<path>.<position>.broken`
    /// (durably), so that nothing cut is lost for good.
    /// - Returns: the copy's path and its size; nil when there is nothing past `position`.
    static func setAside(_ file: FileHandle, path: String, from position: FilePosition, size: Int64,
                         directory: String) throws(JournalError) -> (path: String, bytes: Int64)? {
        guard size > position.value else { return nil }
        let count = size - position.value
        var bytes = ByteBufferAllocator().buffer(capacity: Int(count))
        _ = try file.read(into: &bytes, at: position, count: Int(count))
        let copy = path + ".\(position.value).broken"
        try FileSystem.writeAtomically(bytes, to: copy, directory: directory)
        return (copy, count)
    }

    /// Cuts `file` at `position`, its bytes from there set aside first (`setAside`), and syncs it.
    /// - Returns: the copy's path and the bytes cut.
    static func cutTail(of file: FileHandle, path: String, at position: FilePosition, size: Int64,
                        directory: String) throws(JournalError) -> (path: String, bytes: Int64) {
        let aside = try setAside(file, path: path, from: position, size: size, directory: directory)
        try file.truncate(to: position)
        try file.sync()
        return aside ?? (path + ".\(position.value).broken", 0)
    }

    /// Creates an empty segment file and its index (header only), durably.
    static func create(base: Offset, directory: String) throws(JournalError) -> ActiveSegment {
        let file = try FileHandle.open(JournalFiles.join(directory, JournalFiles.segmentName(base)),
                                       flags: O_RDWR | O_CREAT | O_EXCL)
        let indexFile = try FileHandle.open(JournalFiles.join(directory, JournalFiles.indexName(base)),
                                            flags: O_RDWR | O_CREAT | O_TRUNC)
        let header = SegmentIndex(baseOffset: base).encodedHeader()
        try indexFile.write(header, at: .zero)
        try FileSystem.syncDirectory(directory)
        return ActiveSegment(baseOffset: base, file: file, indexFile: indexFile, position: .zero,
                             indexPosition: FilePosition(Int64(header.readableBytes)), lastIndexedPosition: .zero)
    }

    /// Loads one segment: scans it (all of it, or from its last index entry), cuts a damaged
    /// tail of the last segment, and makes its index file match the scan.
    static func load(
        base: Offset,
        isLast: Bool,
        directory: String,
        configuration: JournalConfiguration,
        logger: Logger,
        report: inout RecoveryReport
    ) throws(JournalError) -> Segment {
        let segmentName = JournalFiles.segmentName(base)
        let path = JournalFiles.join(directory, segmentName)
        let indexPath = JournalFiles.join(directory, JournalFiles.indexName(base))
        let file = try FileHandle.open(path, flags: O_RDWR)
        let size = try file.size()
        let stored: SegmentIndex? = FileSystem.exists(indexPath)
            ? SegmentIndex.decode(try FileSystem.readAll(indexPath), baseOffset: base, segmentBytes: size)
            : nil

        var scan: SegmentScan
        if configuration.verification == .lastSegmentTail, let stored, let start = stored.entries.last,
           let fromEntry = try scanBatches(file: file, base: base, start: start, prefix: stored, size: size,
                                           interval: configuration.indexIntervalBytes) {
            scan = fromEntry
        } else {
            guard let full = try scanBatches(file: file, base: base, start: IndexEntry(offset: base, position: .zero),
                                             prefix: SegmentIndex(baseOffset: base), size: size,
                                             interval: configuration.indexIntervalBytes)
            else { preconditionFailure("a scan from the segment start always yields a result") }
            scan = full
        }

        if let (position, offset, kind) = scan.corruption {
            guard isLast else {
                throw .corrupt(CorruptionReport(file: path, position: position, expectedOffset: offset, kind: kind))
            }
            let (brokenPath, cut) = try cutTail(of: file, path: path, at: position, size: size, directory: directory)
            logger.warning("journal tail truncated", metadata: [
                "journal.segment": "\(segmentName)",
                "journal.position": "\(position)",
                "journal.offset": "\(offset)",
                "journal.bytes_cut": "\(cut)",
                "journal.reason": "\(kind)",
                "journal.broken_copy": "\(brokenPath)",
            ])
            report.truncation = .init(file: path, position: position, offset: offset, bytesCut: cut, kind: kind,
                                      brokenCopy: brokenPath)
        }

        if stored != scan.index {
            try FileSystem.writeAtomically(scan.index.encoded(), to: indexPath, directory: directory)
            report.rebuiltIndexes.append(JournalFiles.indexName(base))
            logger.info("journal index rebuilt", metadata: [
                "journal.index": "\(JournalFiles.indexName(base))",
                "journal.index_entries": "\(scan.index.entries.count)",
            ])
        }
        return Segment(baseOffset: base, file: file, index: scan.index, sizeBytes: scan.endPosition.value,
                            nextOffset: scan.nextOffset, lastTimestampMs: scan.lastTimestampMs)
    }

    /// Walks a segment's batches from `start` (whose entries before it come from `prefix`),
    /// checking each CRC and rebuilding index entries with the writer's rule.
    /// - Returns: nil when `start` is not at a valid batch (a stale index entry): the caller
    ///   then scans from the segment start instead.
    private static func scanBatches(
        file: FileHandle,
        base: Offset,
        start: IndexEntry,
        prefix: SegmentIndex,
        size: Int64,
        interval: Int
    ) throws(JournalError) -> SegmentScan? {
        var index = SegmentIndex(baseOffset: base)
        for entry in prefix.entries where entry.position <= start.position { index.append(entry) }
        var scanner = SegmentScanner(file: file, from: start.position, to: FilePosition(size), expectedOffset: start.offset)
        var scan = SegmentScan(nextOffset: start.offset, endPosition: start.position, lastTimestampMs: nil, index: index)
        var lastIndexed = start.position
        var first = true
        while true {
            switch try scanner.next() {
            case .end:
                return scan
            case .corrupt(let position, let kind):
                if first && start.position != .zero { return nil }
                scan.corruption = (position, scanner.expectedOffset, kind)
                return scan
            case .batch(let header, let position, _):
                if position.value - lastIndexed.value >= interval {
                    scan.index.append(IndexEntry(offset: header.baseOffset, position: position))
                    lastIndexed = position
                }
                scan.nextOffset = header.nextOffset
                scan.endPosition = position.advanced(by: header.totalBytes)
                scan.lastTimestampMs = max(scan.lastTimestampMs ?? header.lastTimestampMs, header.lastTimestampMs)
            }
            first = false
        }
    }
}

/// What one pass over a segment found.
private struct SegmentScan {
    var nextOffset: Offset
    var endPosition: FilePosition
    var lastTimestampMs: Int64?
    var index: SegmentIndex
    var corruption: (FilePosition, Offset, CorruptionKind)?
}

/// The write side of the active segment. Owned by the writer thread alone.
struct ActiveSegment: Sendable {
    let baseOffset: Offset
    let file: FileHandle
    let indexFile: FileHandle
    /// End of the segment's data: where the next batch goes.
    var position: FilePosition
    /// End of the index file: where the next entry goes.
    var indexPosition: FilePosition
    var lastIndexedPosition: FilePosition
}
