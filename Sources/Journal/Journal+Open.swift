#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore

/// What `Journal.open` found and did.
public struct RecoveryReport: Sendable {
    /// A torn or corrupt tail cut from the last segment.
    public struct Truncation: Sendable {
        public var file: String
        public var position: FilePosition
        /// The offset the first cut batch would have had: records from here on were lost.
        public var offset: Offset
        public var bytesCut: Int64
        public var kind: CorruptionKind
        /// Where the cut bytes were kept.
        public var brokenCopy: String
    }

    public var truncation: Truncation?
    /// Index files that were missing or stale and were rewritten from their segment.
    public var rebuiltIndexes: [String] = []
    /// Leftover temporary files and indexes without a segment, removed.
    public var removedFiles: [String] = []
    public var segmentCount = 0
    public var nextOffset = Offset.zero
}

/// What one pass over a segment found.
private struct SegmentScan {
    var nextOffset: Offset
    var endPosition: FilePosition
    var lastTimestampMs: Int64?
    var index: SegmentIndex
    var corruption: (FilePosition, Offset, CorruptionKind)?
}

extension Journal {
    /// Opens (creating if needed) the journal in `directory`: takes its lock, checks and
    /// repairs it as `configuration.verification` says, and starts the writer.
    ///
    /// A torn or corrupt tail of the last segment is cut (the bytes kept as `*.broken`, a
    /// warning logged, `recovery.truncation` set). Damage anywhere else fails the open. Missing
    /// or stale indexes are rebuilt. Blocking I/O: call it at start-up, not on a hot path.
    /// - Throws: `JournalError.invalidConfiguration`, `.locked`, `.unsupportedJournal`,
    ///   `.corrupt` (naming file, byte position and offset), `.io`.
    public static func open(
        directory: String,
        configuration: JournalConfiguration = JournalConfiguration(),
        logger: Logger = Logger(label: "chatlog.journal")
    ) throws(JournalError) -> Journal {
        try configuration.validate()
        try FileSystem.makeDirectory(directory)
        let lockFile = try acquireLock(directory: directory)
        try checkMeta(directory: directory)
        var report = RecoveryReport()

        let names = try FileSystem.list(directory)
        let bases = names.compactMap(JournalFiles.baseOffset(ofSegment:)).sorted()
        let indexNames = Set(bases.map(JournalFiles.indexName))
        for name in names where name.hasSuffix(".tmp") || (name.hasSuffix(JournalFiles.indexSuffix) && !indexNames.contains(name)) {
            try FileSystem.remove(JournalFiles.join(directory, name))
            report.removedFiles.append(name)
        }

        var segments: [SegmentState] = []
        for base in bases {
            let isLast = base == bases.last
            if let previous = segments.last, previous.nextOffset != base {
                throw .corrupt(CorruptionReport(
                    file: JournalFiles.join(directory, JournalFiles.segmentName(base)), position: .zero,
                    expectedOffset: previous.nextOffset, kind: .offsetGap(expected: previous.nextOffset, found: base)))
            }
            segments.append(try loadSegment(base: base, isLast: isLast, directory: directory,
                                            configuration: configuration, logger: logger, report: &report))
        }

        let active: ActiveSegment
        if let last = segments.last {
            let indexFile = try FileHandle.open(JournalFiles.join(directory, JournalFiles.indexName(last.baseOffset)), flags: O_RDWR)
            active = ActiveSegment(
                baseOffset: last.baseOffset, file: last.file, indexFile: indexFile,
                position: FilePosition(last.sizeBytes),
                indexPosition: FilePosition(Int64(SegmentIndex.headerBytes + last.index.entries.count * SegmentIndex.entryBytes)),
                lastIndexedPosition: last.index.entries.last?.position ?? .zero)
        } else {
            active = try createSegment(base: .zero, directory: directory)
            segments.append(SegmentState(baseOffset: .zero, file: active.file, index: SegmentIndex(baseOffset: .zero),
                                         sizeBytes: 0, nextOffset: .zero, lastTimestampMs: nil))
        }
        guard let last = segments.last else { preconditionFailure("a journal has at least one segment after open") }
        report.segmentCount = segments.count
        report.nextOffset = last.nextOffset
        logger.info("journal opened", metadata: [
            "journal.directory": "\(directory)",
            "journal.segments": "\(segments.count)",
            "journal.first_offset": "\(segments.first?.baseOffset ?? .zero)",
            "journal.next_offset": "\(last.nextOffset)",
            "journal.durability": "\(configuration.durability)",
        ])
        var writer = WriterState(active: active, next: last.nextOffset, lastTimestampMs: last.lastTimestampMs)
        writer.lastSync = .now
        let expired = retentionCut(segments, retention: configuration.retention, nowMs: nowMs())
        try deleteSegments(segments.prefix(expired), directory: directory, logger: logger)
        segments.removeFirst(expired)
        let epochs = try LeaderEpochs.load(directory: directory)
        let seenEpoch = try loadSeenEpoch(directory: directory)
        return Journal(directory: directory, configuration: configuration, logger: logger, lockFile: lockFile,
                       recovery: report, segments: segments, epochs: epochs, seenEpoch: seenEpoch, writer: writer)
    }

    /// Loads one segment: scans it (all of it, or from its last index entry), cuts a damaged
    /// tail of the last segment, and makes its index file match the scan.
    private static func loadSegment(
        base: Offset,
        isLast: Bool,
        directory: String,
        configuration: JournalConfiguration,
        logger: Logger,
        report: inout RecoveryReport
    ) throws(JournalError) -> SegmentState {
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
           let fromEntry = try scanSegment(file: file, base: base, start: start, prefix: stored, size: size,
                                           interval: configuration.indexIntervalBytes) {
            scan = fromEntry
        } else {
            guard let full = try scanSegment(file: file, base: base, start: IndexEntry(offset: base, position: .zero),
                                             prefix: SegmentIndex(baseOffset: base), size: size,
                                             interval: configuration.indexIntervalBytes)
            else { preconditionFailure("a scan from the segment start always yields a result") }
            scan = full
        }

        if let (position, offset, kind) = scan.corruption {
            guard isLast else {
                throw .corrupt(CorruptionReport(file: path, position: position, expectedOffset: offset, kind: kind))
            }
            let cut = size - position.value
            let brokenPath = path + ".\(position.value).broken"
            var bytes = ByteBufferAllocator().buffer(capacity: Int(cut))
            try file.read(into: &bytes, at: position, count: Int(cut))
            try FileSystem.writeAtomically(bytes, to: brokenPath, directory: directory)
            try file.truncate(to: position)
            try file.sync()
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
        return SegmentState(baseOffset: base, file: file, index: scan.index, sizeBytes: scan.endPosition.value,
                            nextOffset: scan.nextOffset, lastTimestampMs: scan.lastTimestampMs)
    }

    /// Walks a segment's batches from `start` (whose entries before it come from `prefix`),
    /// checking each CRC and rebuilding index entries with the writer's rule.
    /// - Returns: nil when `start` is not at a valid batch (a stale index entry): the caller
    ///   then scans from the segment start instead.
    private static func scanSegment(
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

    /// Takes the journal's exclusive `flock` and writes our pid into the lock file.
    /// - Throws: `JournalError.locked` with the holder's pid when another process has it.
    static func acquireLock(directory: String) throws(JournalError) -> FileHandle {
        let path = JournalFiles.join(directory, JournalFiles.lockName)
        let handle = try FileHandle.open(path, flags: O_RDWR | O_CREAT)
        guard flock(handle.descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let error = errno
            guard error == EWOULDBLOCK else { throw .io(operation: "flock", path: path, errno: error) }
            var contents = ByteBufferAllocator().buffer(capacity: 32)
            _ = try? handle.read(into: &contents, at: .zero, count: 32)
            let pid = contents.readString(length: contents.readableBytes)
                .flatMap { Int32($0.trimmingWhitespace()) }
            throw .locked(directory: directory, holderPID: pid)
        }
        try handle.truncate(to: .zero)
        try handle.write(ByteBuffer(string: "\(getpid())\n"), at: .zero)
        return handle
    }

    static let metaContents = "chatlog journal\nformat-version 1\n"

    /// Writes the meta file of a new journal, or checks that of an existing one.
    static func checkMeta(directory: String) throws(JournalError) {
        let path = JournalFiles.join(directory, JournalFiles.metaName)
        guard FileSystem.exists(path) else {
            try FileSystem.writeAtomically(ByteBuffer(string: metaContents), to: path, directory: directory)
            return
        }
        var bytes = try FileSystem.readAll(path)
        let text = bytes.readString(length: bytes.readableBytes) ?? ""
        guard text == metaContents else {
            throw .unsupportedJournal(directory: directory,
                                      reason: "\(JournalFiles.metaName) says \(text.debugDescription), expected \(metaContents.debugDescription)")
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        String(self.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
