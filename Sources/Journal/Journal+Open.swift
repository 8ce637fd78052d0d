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

        var segments: [Segment] = []
        for base in bases {
            let isLast = base == bases.last
            if let previous = segments.last, previous.nextOffset != base {
                throw .corrupt(CorruptionReport(
                    file: JournalFiles.join(directory, JournalFiles.segmentName(base)), position: .zero,
                    expectedOffset: previous.nextOffset, kind: .offsetGap(expected: previous.nextOffset, found: base)))
            }
            segments.append(try Segment.load(base: base, isLast: isLast, directory: directory,
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
            active = try Segment.create(base: .zero, directory: directory)
            segments.append(Segment(baseOffset: .zero, file: active.file, index: SegmentIndex(baseOffset: .zero),
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
