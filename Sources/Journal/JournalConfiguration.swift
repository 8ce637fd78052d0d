/// When appended batches are forced to stable storage.
public enum Durability: Sendable, Equatable, CustomStringConvertible {
    /// `fdatasync` after every write cycle, before any append in it is acknowledged. The default:
    /// an acknowledged record survives power loss.
    case everyBatch
    /// Acknowledge once written to the operating system, `fdatasync` at most this often. A crash
    /// of the process loses nothing; a power failure may lose up to one interval of
    /// acknowledged records.
    case interval(Duration)
    /// Never `fdatasync` (segment rolls and close still do). For tests and benchmarks only.
    case none

    public var description: String {
        switch self {
        case .everyBatch: "fsync every batch"
        case .interval(let interval): "fsync every \(interval) (acknowledged records may be lost on power failure)"
        case .none: "no fsync (acknowledged records may be lost on power failure)"
        }
    }
}

/// How much of the journal `Journal.open` checks before accepting appends.
public enum OpenVerification: Sendable, Equatable {
    /// Check the CRC of every batch of every segment (0.14 s for 350 MB from the page cache):
    /// a corrupt sealed segment fails the open. The default.
    case allSegments
    /// Check only the last segment from its last index entry on; sealed segments are checked
    /// batch by batch as they are read.
    case lastSegmentTail
}

/// Retention: which whole sealed segments may be deleted. The active segment is never deleted.
public struct Retention: Sendable, Equatable {
    /// Delete the oldest sealed segments while the journal is larger than this.
    public var totalBytesMax: Int64?
    /// Delete sealed segments whose newest record is older than this.
    public var age: Duration?
    /// Never delete a segment holding an offset at or above this: what sits above the journal
    /// (projections that cannot be rebuilt once the start is gone) has not made the events from
    /// here on durable elsewhere yet. Nil: no floor. Raised while open by
    /// `Journal.raiseRetentionFloor(to:)`.
    public var floor: Offset?

    public init(totalBytesMax: Int64? = nil, age: Duration? = nil, floor: Offset? = nil) {
        self.totalBytesMax = totalBytesMax
        self.age = age
        self.floor = floor
    }

    /// Keep everything.
    public static let forever = Retention()
}

/// Every limit and policy of a journal, validated by `validate()` before a journal opens.
public struct JournalConfiguration: Sendable {
    /// Largest record accepted by `append`. Protects memory of every reader and the batch
    /// limit; an oversize record is refused before anything is written.
    public var recordBytesMax: Int = 1 << 20
    /// Largest uncompressed batch payload (records and their 4-byte length prefixes) the writer
    /// forms. Bounds the memory of one write and one read; must hold at least one
    /// `recordBytesMax` record.
    public var batchBytesMax: Int = 4 << 20
    /// A pending batch is closed once it holds this many bytes, and the next record starts a
    /// new one. Several batches of one group are compressed in parallel, and a read of one
    /// offset decompresses about this much. At most `batchBytesMax`.
    public var batchBytesTarget: Int = 64 << 10
    /// Most records in one batch.
    public var batchRecordsMax: Int = 65_536
    /// A segment rolls before a batch would take it past this size. Bounds the unit of
    /// retention and recovery; at most `BatchHeader.segmentBytesLimit` (4 GiB).
    public var segmentBytesMax: Int64 = 256 << 20
    /// Bytes of appended records waiting for the writer before `append` waits for room.
    /// This is the writer's queue depth; it bounds memory when producers outpace the disk.
    public var pendingBytesMax: Int = 64 << 20
    /// A sparse index entry is written after at least this many segment bytes.
    public var indexIntervalBytes: Int = 64 << 10
    public var durability: Durability = .everyBatch
    public var verification: OpenVerification = .allSegments
    public var retention: Retention = .forever
    /// Fault injection, for tests of what sits above the journal (a server's fail-stop): once
    /// this many bytes of batches have been written since open, the next write fails with EIO
    /// as a failing disk would. Nil (the default) in every real use.
    public var failWritesAfterBytes: Int64?

    public init() {}

    /// Checks each limit and the relationships between them.
    /// - Throws: `JournalError.invalidConfiguration` naming the first limit that is wrong.
    public func validate() throws(JournalError) {
        func fail(_ message: String) throws(JournalError) {
            throw JournalError.invalidConfiguration(message)
        }
        if recordBytesMax < 1 { try fail("recordBytesMax must be at least 1, got \(recordBytesMax)") }
        if batchBytesMax < recordBytesMax + RecordFraming.prefixBytes {
            try fail("batchBytesMax (\(batchBytesMax)) must hold one record of recordBytesMax (\(recordBytesMax)) plus its \(RecordFraming.prefixBytes)-byte length prefix")
        }
        if batchBytesMax > BatchHeader.payloadBytesLimit {
            try fail("batchBytesMax (\(batchBytesMax)) exceeds the format's limit of \(BatchHeader.payloadBytesLimit) bytes")
        }
        if batchBytesTarget < 1 || batchBytesTarget > batchBytesMax {
            try fail("batchBytesTarget (\(batchBytesTarget)) must be in 1...batchBytesMax (\(batchBytesMax))")
        }
        if batchRecordsMax < 1 || batchRecordsMax > BatchHeader.recordCountLimit {
            try fail("batchRecordsMax must be in 1...\(BatchHeader.recordCountLimit), got \(batchRecordsMax)")
        }
        let largestBatch = Int64(BatchHeader.size + LZ4Codec.compressBound(batchBytesMax))
        if segmentBytesMax < largestBatch {
            try fail("segmentBytesMax (\(segmentBytesMax)) must hold the largest possible batch (\(largestBatch) bytes for batchBytesMax \(batchBytesMax))")
        }
        if segmentBytesMax > BatchHeader.segmentBytesLimit {
            try fail("segmentBytesMax (\(segmentBytesMax)) exceeds the format's limit of \(BatchHeader.segmentBytesLimit) bytes")
        }
        if pendingBytesMax < batchBytesMax {
            try fail("pendingBytesMax (\(pendingBytesMax)) must be at least batchBytesMax (\(batchBytesMax))")
        }
        if indexIntervalBytes < 1 { try fail("indexIntervalBytes must be at least 1, got \(indexIntervalBytes)") }
        if case .interval(let interval) = durability, interval <= .zero {
            try fail("the durability interval must be positive, got \(interval)")
        }
        if let bytes = retention.totalBytesMax, bytes < 1 {
            try fail("retention.totalBytesMax must be positive, got \(bytes)")
        }
        if let age = retention.age, age <= .zero {
            try fail("retention.age must be positive, got \(age)")
        }
    }
}
