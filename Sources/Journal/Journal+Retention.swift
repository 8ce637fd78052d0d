import Logging

/// Retention: whole sealed segments deleted past the size and age limits (FORMAT.md).
extension Journal {
    /// Deletes whole sealed segments past the retention limits. Readers holding a deleted
    /// segment keep reading it through their open descriptor.
    func applyRetention() throws(JournalError) {
        let retention = configuration.retention
        guard retention.totalBytesMax != nil || retention.age != nil else { return }
        let nowMs = Self.nowMs()
        let expired: [Segment] = state.withLock { state in
            var retention = retention
            retention.floor = state.retentionFloor
            let count = Self.retentionCut(state.segments, retention: retention, nowMs: nowMs)
            defer { state.segments.removeFirst(count) }
            return Array(state.segments.prefix(count))
        }
        try Self.deleteSegments(expired[...], directory: directory, logger: logger)
    }

    /// Lets retention delete the segments wholly below `offset` (what sits above the journal has
    /// made them durable elsewhere), and deletes those past the limits now. The floor only rises.
    public func raiseRetentionFloor(to offset: Offset) throws(JournalError) {
        let raised = state.withLock { state in
            guard let floor = state.retentionFloor, offset > floor else { return false }
            state.retentionFloor = offset
            return true
        }
        if raised { try applyRetention() }
    }

    /// How many of the oldest segments retention removes. It weighs sealed segments only: the
    /// active (last) one is never removed and its bytes do not count toward `totalBytesMax`.
    /// So an open and a roll apply one rule (an open used to count the active segment's bytes,
    /// which a roll, with its new empty segment, never did, and cut one segment more).
    static func retentionCut(_ segments: [Segment], retention: Retention, nowMs: Int64) -> Int {
        var total = segments.dropLast().reduce(Int64(0)) { $0 + $1.sizeBytes }
        let ageMs = retention.age.map { $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000 }
        var count = 0
        while count < segments.count - 1 {
            let segment = segments[count]
            if let floor = retention.floor, segment.nextOffset > floor { break }
            let tooBig = retention.totalBytesMax.map { total > $0 } ?? false
            let tooOld = ageMs.map { (segment.lastTimestampMs ?? nowMs) < nowMs - $0 } ?? false
            guard tooBig || tooOld else { break }
            total -= segment.sizeBytes
            count += 1
        }
        return count
    }

    static func deleteSegments(_ segments: ArraySlice<Segment>, directory: String, logger: Logger) throws(JournalError) {
        for segment in segments {
            try FileSystem.remove(JournalFiles.join(directory, JournalFiles.segmentName(segment.baseOffset)))
            try FileSystem.remove(JournalFiles.join(directory, JournalFiles.indexName(segment.baseOffset)))
            logger.info("journal segment deleted by retention", metadata: [
                "journal.segment": "\(JournalFiles.segmentName(segment.baseOffset))",
                "journal.segment_bytes": "\(segment.sizeBytes)",
                "journal.next_offset": "\(segment.nextOffset)",
            ])
        }
        if !segments.isEmpty { try FileSystem.syncDirectory(directory) }
    }
}
