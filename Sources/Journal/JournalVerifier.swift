#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// A segment file of a journal directory.
public struct SegmentFileInfo: Sendable {
    public var baseOffset: Offset
    public var path: String
    public var sizeBytes: Int64
}

/// One step of walking a segment read-only.
public enum SegmentWalkStep: Sendable {
    /// A batch whose CRC, framing and offset all check out.
    case batch(RecordBatch)
    /// A problem; the walk of this segment stops there (what follows cannot be framed).
    case problem(CorruptionReport)
}

/// Read-only access to a journal directory, for `verify`, `inspect` and `stats`.
///
/// Takes no lock and writes nothing, so it may run beside a live server; a batch being written
/// at that moment can show up as a torn tail. Stateless.
public enum JournalDirectory {
    /// The segment files in offset order.
    /// - Throws: `JournalError.io` when the directory cannot be listed, `.unsupportedJournal`
    ///   when it has no journal meta file.
    public static func segments(in directory: String) throws(JournalError) -> [SegmentFileInfo] {
        guard FileSystem.exists(JournalFiles.join(directory, JournalFiles.metaName)) else {
            throw .unsupportedJournal(directory: directory, reason: "no \(JournalFiles.metaName) file: not a journal directory")
        }
        var segments: [SegmentFileInfo] = []
        for name in try FileSystem.list(directory) {
            guard let base = JournalFiles.baseOffset(ofSegment: name) else { continue }
            let path = JournalFiles.join(directory, name)
            let size = try FileHandle.open(path, flags: O_RDONLY).size()
            segments.append(SegmentFileInfo(baseOffset: base, path: path, sizeBytes: size))
        }
        return segments.sorted { $0.baseOffset < $1.baseOffset }
    }

    /// Whether a process holds the journal's lock (a running server or writer): nil when none
    /// does, else the holder's pid as its lock file states it (nil inside when unreadable).
    /// Probes with a shared lock that it releases at once; writes nothing.
    public static func lockHolder(directory: String) -> Int32?? {
        let path = JournalFiles.join(directory, JournalFiles.lockName)
        guard let handle = try? FileHandle.open(path, flags: O_RDONLY) else { return nil }
        if flock(handle.descriptor, LOCK_SH | LOCK_NB) == 0 {
            flock(handle.descriptor, LOCK_UN)
            return nil
        }
        var contents = ByteBufferAllocator().buffer(capacity: 32)
        _ = try? handle.read(into: &contents, at: .zero, count: 32)
        return .some(contents.readString(length: contents.readableBytes).flatMap { Int32($0.trimmingWhitespace()) })
    }

    /// Walks every batch of a segment, checking each one, until its end or the first problem.
    ///
    /// With `decode` (the default) every batch is decompressed and its record framing checked;
    /// without it only headers and CRCs are checked and batches come with no records.
    public static func walk(
        _ segment: SegmentFileInfo,
        decode: Bool = true,
        _ visit: (SegmentWalkStep) throws -> Void
    ) throws {
        let file = try FileHandle.open(segment.path, flags: O_RDONLY)
        var scanner = SegmentScanner(file: file, from: .zero, to: FilePosition(segment.sizeBytes),
                                     expectedOffset: segment.baseOffset)
        while true {
            switch try scanner.next() {
            case .end:
                return
            case .corrupt(let position, let kind):
                try visit(.problem(CorruptionReport(file: segment.path, position: position,
                                                    expectedOffset: scanner.expectedOffset, kind: kind)))
                return
            case .batch(let header, let position, let bytes):
                guard decode else {
                    try visit(.batch(RecordBatch(header: header, position: position, framedRecords: ByteBuffer())))
                    continue
                }
                switch BatchCodecIO.decodeRecords(ofBatchIn: bytes, header: header) {
                case .success(let framed):
                    try visit(.batch(RecordBatch(header: header, position: position, framedRecords: framed)))
                case .failure(let kind):
                    try visit(.problem(CorruptionReport(file: segment.path, position: position,
                                                        expectedOffset: header.baseOffset, kind: kind)))
                    return
                }
            }
        }
    }

    /// Whole, valid batches of a segment file from `position` (where the batch of offset
    /// `offset` starts), byte for byte, at most about `maxBytes` of them (at least one when
    /// there is one): what a backup copies from a journal it does not hold the lock of.
    /// Reads no further than `end` (the file's size when the copy began). Stops at the first
    /// batch that does not check out and says so in `stopped`: at the end of a live journal's
    /// active segment, the batch being written; anywhere else, damage.
    public static func readRaw(_ segment: SegmentFileInfo, from position: FilePosition, offset: Offset, to end: FilePosition,
                               maxBytes: Int) throws(JournalError) -> (batches: RawBatches, next: FilePosition, stopped: CorruptionReport?) {
        let file = try FileHandle.open(segment.path, flags: O_RDONLY)
        var scanner = SegmentScanner(file: file, from: position, to: end, expectedOffset: offset,
                                     readAheadBytes: max(64 << 10, min(maxBytes, 8 << 20)))
        var bytes = ByteBufferAllocator().buffer(capacity: min(maxBytes, Int(end.value - position.value)))
        var next = offset
        var reached = position
        var stopped: CorruptionReport?
        scan: while true {
            switch try scanner.next() {
            case .end:
                break scan
            case .corrupt(let at, let kind):
                stopped = CorruptionReport(file: segment.path, position: at, expectedOffset: scanner.expectedOffset, kind: kind)
                break scan
            case .batch(let header, let at, let batch):
                if next != offset && bytes.readableBytes + header.totalBytes > maxBytes { break scan }
                bytes.writeImmutableBuffer(batch)
                next = header.nextOffset
                reached = at.advanced(by: header.totalBytes)
            }
        }
        return (RawBatches(segmentBase: segment.baseOffset, firstOffset: offset, nextOffset: next, bytes: bytes), reached, stopped)
    }

    /// The result of `verify`.
    public struct VerifyReport: Sendable {
        public var segments = 0
        public var batches = 0
        public var records: UInt64 = 0
        public var bytes: Int64 = 0
        /// Damage in segment data: each makes the journal fail verification.
        public var problems: [CorruptionReport] = []
        /// Index files that are missing or do not match their segment. Indexes are derived, so
        /// these are notes (open rebuilds them), not failures.
        public var indexNotes: [String] = []
        public var isClean: Bool { problems.isEmpty }
    }

    /// Checks every batch of every segment, and the continuity of offsets between segments.
    /// Never modifies anything.
    public static func verify(directory: String, indexIntervalBytes: Int = JournalConfiguration().indexIntervalBytes) throws -> VerifyReport {
        var report = VerifyReport()
        var expected: Offset?
        for segment in try segments(in: directory) {
            report.segments += 1
            report.bytes += segment.sizeBytes
            if let expected, expected != segment.baseOffset {
                report.problems.append(CorruptionReport(file: segment.path, position: .zero, expectedOffset: expected,
                                                        kind: .offsetGap(expected: expected, found: segment.baseOffset)))
            }
            var next = segment.baseOffset
            var rebuilt = SegmentIndex(baseOffset: segment.baseOffset)
            var lastIndexed = FilePosition.zero
            var damaged = false
            try walk(segment) { step in
                switch step {
                case .batch(let batch):
                    report.batches += 1
                    report.records += UInt64(batch.header.recordCount)
                    next = batch.nextOffset
                    if batch.position.value - lastIndexed.value >= indexIntervalBytes {
                        rebuilt.append(IndexEntry(offset: batch.baseOffset, position: batch.position))
                        lastIndexed = batch.position
                    }
                case .problem(let problem):
                    report.problems.append(problem)
                    damaged = true
                }
            }
            // After damage the segment's true end is unknown: do not report the next segment's
            // start as a gap on top of it.
            expected = damaged ? nil : next
            let indexName = JournalFiles.indexName(segment.baseOffset)
            let indexPath = JournalFiles.join(directory, indexName)
            if !FileSystem.exists(indexPath) {
                report.indexNotes.append("\(indexName) is missing (rebuilt on next open)")
            } else if !damaged {
                let stored = SegmentIndex.decode(try FileSystem.readAll(indexPath), baseOffset: segment.baseOffset,
                                                 segmentBytes: segment.sizeBytes)
                if stored == nil {
                    report.indexNotes.append("\(indexName) is unreadable (rebuilt on next open)")
                } else if let stored, !stored.entries.allSatisfy({ rebuilt.entries.contains($0) }) {
                    report.indexNotes.append("\(indexName) has entries that point at no batch (rebuilt on next open)")
                }
            }
        }
        return report
    }
}
