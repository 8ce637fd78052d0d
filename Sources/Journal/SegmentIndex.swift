import NIOCore

/// One sparse index entry: the batch starting at `offset` begins at `position`.
public struct IndexEntry: Sendable, Equatable {
    public var offset: Offset
    public var position: FilePosition

    public init(offset: Offset, position: FilePosition) {
        self.offset = offset
        self.position = position
    }
}

/// The sparse offset index of one segment, in memory, and its file encoding (FORMAT.md).
///
/// The index is derived data: it is rebuilt from its segment whenever it is missing or does
/// not check out, never trusted blindly. A value type; owned by whoever holds it.
struct SegmentIndex: Sendable, Equatable {
    static let magic: UInt32 = 0x494C_4843  // "CHLI"
    static let version: UInt16 = 1
    static let headerBytes = 16
    static let entryBytes = 8

    let baseOffset: Offset
    private(set) var entries: [IndexEntry] = []

    init(baseOffset: Offset) {
        self.baseOffset = baseOffset
    }

    mutating func append(_ entry: IndexEntry) {
        if let last = entries.last {
            precondition(entry.offset > last.offset && entry.position > last.position,
                         "index entry \(entry) does not follow \(last)")
        }
        precondition(entry.offset >= baseOffset, "index entry \(entry) before base offset \(baseOffset)")
        entries.append(entry)
    }

    /// Drops entries at or past `position` (after a tail truncation).
    mutating func truncate(at position: FilePosition) {
        entries.removeAll { $0.position >= position }
    }

    /// The last entry at or before `offset`, or the segment start.
    func lookup(_ offset: Offset) -> IndexEntry {
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].offset <= offset { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? IndexEntry(offset: baseOffset, position: .zero) : entries[low - 1]
    }

    func encodedHeader() -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: Self.headerBytes)
        buffer.writeInteger(Self.magic, endianness: .little)
        buffer.writeInteger(Self.version, endianness: .little)
        buffer.writeInteger(UInt16(0), endianness: .little)
        buffer.writeInteger(baseOffset.value, endianness: .little)
        return buffer
    }

    static func encode(_ entry: IndexEntry, base: Offset, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(entry.offset.distance(from: base)), endianness: .little)
        buffer.writeInteger(UInt32(entry.position.value), endianness: .little)
    }

    func encoded() -> ByteBuffer {
        var buffer = encodedHeader()
        for entry in entries { Self.encode(entry, base: baseOffset, into: &buffer) }
        return buffer
    }

    /// Parses an index file, checking its header and that entries strictly increase and lie
    /// inside a segment of `segmentBytes` bytes.
    /// - Returns: nil when anything does not check out (the caller rebuilds the index).
    static func decode(_ bytes: ByteBuffer, baseOffset: Offset, segmentBytes: Int64) -> SegmentIndex? {
        var bytes = bytes
        guard bytes.readableBytes >= headerBytes,
              (bytes.readableBytes - headerBytes) % entryBytes == 0,
              bytes.readInteger(endianness: .little, as: UInt32.self) == magic,
              bytes.readInteger(endianness: .little, as: UInt16.self) == version,
              bytes.readInteger(endianness: .little, as: UInt16.self) == 0,
              bytes.readInteger(endianness: .little, as: UInt64.self) == baseOffset.value
        else { return nil }
        var index = SegmentIndex(baseOffset: baseOffset)
        while let relative = bytes.readInteger(endianness: .little, as: UInt32.self),
              let position = bytes.readInteger(endianness: .little, as: UInt32.self) {
            let entry = IndexEntry(offset: baseOffset.advanced(by: UInt64(relative)), position: FilePosition(Int64(position)))
            if let last = index.entries.last, entry.offset <= last.offset || entry.position <= last.position {
                return nil
            }
            guard entry.position.value < segmentBytes else { return nil }
            index.entries.append(entry)
        }
        return index
    }
}

/// File names in a journal directory (FORMAT.md, "Directory layout").
enum JournalFiles {
    static let lockName = "journal.lock"
    static let metaName = "journal.meta"
    static let segmentSuffix = ".log"
    static let indexSuffix = ".index"

    static func stem(_ base: Offset) -> String {
        let digits = String(base.value)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    static func segmentName(_ base: Offset) -> String { stem(base) + segmentSuffix }
    static func indexName(_ base: Offset) -> String { stem(base) + indexSuffix }

    /// The base offset of a segment file name, or nil when the name is not one.
    static func baseOffset(ofSegment name: String) -> Offset? {
        guard name.hasSuffix(segmentSuffix) else { return nil }
        let stem = name.dropLast(segmentSuffix.count)
        guard stem.count == 20, stem.allSatisfy({ $0.isASCII && $0.isNumber }), let value = UInt64(stem) else { return nil }
        return Offset(value)
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}
