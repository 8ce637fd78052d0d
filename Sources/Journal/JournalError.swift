#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What is wrong with bytes read from a segment file.
public enum CorruptionKind: Error, Sendable, Equatable, CustomStringConvertible {
    /// Fewer bytes than a batch header remain in the file.
    case truncatedHeader(availableBytes: Int)
    /// The first four bytes are not the batch magic.
    case badMagic(found: UInt32)
    /// A header field holds a value the format does not allow.
    case badHeader(String)
    /// The file ends inside the batch's payload.
    case truncatedPayload(expectedBytes: Int, availableBytes: Int)
    /// The stored CRC-32C does not match the bytes.
    case checksumMismatch(stored: UInt32, computed: UInt32)
    /// The batch's base offset is not the one that follows the previous batch.
    case offsetGap(expected: Offset, found: Offset)
    /// The payload does not decompress to exactly its declared length.
    case decompressionFailed
    /// The record length prefixes do not add up to the payload.
    case badRecordFraming(String)

    public var description: String {
        switch self {
        case .truncatedHeader(let available):
            "truncated batch header: \(available) of \(BatchHeader.size) bytes present"
        case .badMagic(let found):
            "bad batch magic 0x\(String(found, radix: 16)) (expected 0x\(String(BatchHeader.magic, radix: 16)))"
        case .badHeader(let message):
            "bad batch header: \(message)"
        case .truncatedPayload(let expected, let available):
            "truncated batch payload: \(available) of \(expected) bytes present"
        case .checksumMismatch(let stored, let computed):
            "CRC-32C mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))"
        case .offsetGap(let expected, let found):
            "offset gap: expected base offset \(expected), found \(found)"
        case .decompressionFailed:
            "LZ4 payload does not decompress to its declared length"
        case .badRecordFraming(let message):
            "bad record framing: \(message)"
        }
    }
}

/// A problem found at one place in a segment file.
public struct CorruptionReport: Sendable, Equatable, CustomStringConvertible {
    /// The segment file's path.
    public var file: String
    /// Byte position of the batch (or of the unreadable bytes) in the file.
    public var position: FilePosition
    /// The offset the batch at this position should start with.
    public var expectedOffset: Offset
    public var kind: CorruptionKind

    public init(file: String, position: FilePosition, expectedOffset: Offset, kind: CorruptionKind) {
        self.file = file
        self.position = position
        self.expectedOffset = expectedOffset
        self.kind = kind
    }

    public var description: String {
        "\(file) at byte \(position) (offset \(expectedOffset)): \(kind)"
    }
}

/// Errors from opening, appending to and reading a journal.
public enum JournalError: Error, Sendable, CustomStringConvertible {
    /// A configuration limit is out of range or inconsistent with another.
    case invalidConfiguration(String)
    /// Another process holds the journal's lock file.
    case locked(directory: String, holderPID: Int32?)
    /// A system call failed.
    case io(operation: String, path: String, errno: Int32)
    /// The directory holds a journal of a format this build does not read, or stray data.
    case unsupportedJournal(directory: String, reason: String)
    /// Bytes on disk are damaged outside the tail that recovery may cut.
    case corrupt(CorruptionReport)
    /// A record is larger than `recordBytesMax`; nothing was written.
    case recordTooLarge(bytes: Int, limit: Int)
    /// An append of no records.
    case emptyAppend
    /// The requested offset is no longer retained (or was never written).
    case offsetOutOfRange(requested: Offset, earliest: Offset, next: Offset)
    /// A previous write or fsync failed: the journal accepts no more appends (fail-stop).
    /// Restart the process to recover from disk.
    case writerFailed(String)
    /// The journal was closed.
    case closed
    /// A local append to a standby's journal, which only takes batches copied from its leader.
    case following
    /// `appendReplicated` on a journal that does not follow a leader.
    case notFollowing
    /// A leader was asked to read from an offset inside a batch: the asker's journal is not a
    /// copy of this one.
    case notBatchBoundary(requested: Offset, batchBase: Offset)
    /// Batches copied from a leader that are not valid, or do not fit this journal; nothing
    /// was written.
    case replicaMismatch(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let message):
            "invalid journal configuration: \(message)"
        case .locked(let directory, let pid):
            if let pid {
                "journal \(directory) is locked by process \(pid); stop that process or use another directory"
            } else {
                "journal \(directory) is locked by another process; stop it or use another directory"
            }
        case .io(let operation, let path, let errno):
            "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .unsupportedJournal(let directory, let reason):
            "\(directory) is not a journal this version can open: \(reason)"
        case .corrupt(let report):
            "corrupt journal: \(report); run `chatlog journal verify` for every problem"
        case .recordTooLarge(let bytes, let limit):
            "record of \(bytes) bytes exceeds the limit of \(limit) bytes; nothing was written"
        case .emptyAppend:
            "an append needs at least one record"
        case .offsetOutOfRange(let requested, let earliest, let next):
            "offset \(requested) is outside the journal (earliest retained \(earliest), next \(next))"
        case .writerFailed(let reason):
            "the journal stopped accepting appends after a storage failure (\(reason)); restart to recover from disk"
        case .closed:
            "the journal is closed"
        case .following:
            "this journal is a standby's copy of its leader's: it takes no local appends"
        case .notFollowing:
            "this journal does not follow a leader: it takes no copied batches"
        case .notBatchBoundary(let requested, let base):
            "offset \(requested) is inside the batch that starts at \(base): the journal asking is not a copy of this one"
        case .replicaMismatch(let reason):
            "the leader's batches do not fit this journal (nothing written): \(reason)"
        }
    }
}
