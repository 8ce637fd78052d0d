import NIOCore

/// How a batch's payload is stored.
public enum BatchCodec: UInt8, Sendable, CustomStringConvertible {
    /// Stored as is (used when LZ4 would not make the payload smaller).
    case none = 0
    /// One LZ4 block (liblz4's `LZ4_compress_default` format).
    case lz4 = 1

    public var description: String {
        switch self {
        case .none: "none"
        case .lz4: "lz4"
        }
    }
}

/// The fixed 56-byte little-endian header in front of every record batch. FORMAT.md draws it.
///
/// A value type; `decode` never trusts a length before checking it against the format limits.
public struct BatchHeader: Sendable, Equatable {
    /// "CHLB" read as a little-endian UInt32: the bytes 43 48 4C 42 on disk.
    public static let magic: UInt32 = 0x424C_4843
    public static let size = 56
    public static let formatVersion: UInt16 = 1
    /// Byte position of the first byte the CRC covers (everything after the CRC field).
    public static let checksummedFrom = 8
    /// The format's own ceiling for a batch payload, compressed or not. Readers refuse larger
    /// lengths before allocating, whatever the writer's configuration was.
    public static let payloadBytesLimit = 64 << 20
    /// The format's ceiling for records in one batch.
    public static let recordCountLimit = 1 << 20
    /// Segment files are at most 4 GiB so that index positions fit in 32 bits.
    public static let segmentBytesLimit: Int64 = 1 << 32

    public var codec: BatchCodec
    public var leaderEpoch: UInt32
    public var baseOffset: Offset
    public var recordCount: UInt32
    /// Bytes of payload that follow the header on disk.
    public var payloadLength: UInt32
    /// Bytes of the framed records once decompressed.
    public var uncompressedLength: UInt32
    /// Milliseconds since the Unix epoch at which the first and last record were appended.
    public var firstTimestampMs: Int64
    public var lastTimestampMs: Int64
    /// CRC-32C of header bytes 8..<56 followed by the payload.
    public var crc: UInt32

    public init(
        codec: BatchCodec,
        leaderEpoch: UInt32,
        baseOffset: Offset,
        recordCount: UInt32,
        payloadLength: UInt32,
        uncompressedLength: UInt32,
        firstTimestampMs: Int64,
        lastTimestampMs: Int64,
        crc: UInt32 = 0
    ) {
        self.codec = codec
        self.leaderEpoch = leaderEpoch
        self.baseOffset = baseOffset
        self.recordCount = recordCount
        self.payloadLength = payloadLength
        self.uncompressedLength = uncompressedLength
        self.firstTimestampMs = firstTimestampMs
        self.lastTimestampMs = lastTimestampMs
        self.crc = crc
    }

    /// The offset after this batch's last record.
    public var nextOffset: Offset { baseOffset.advanced(by: UInt64(recordCount)) }
    public var lastOffset: Offset { baseOffset.advanced(by: UInt64(recordCount) - 1) }
    /// Header plus payload: the batch's size on disk.
    public var totalBytes: Int { Self.size + Int(payloadLength) }

    /// Writes the 56 header bytes, CRC field included as currently set.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(Self.magic, endianness: .little)
        buffer.writeInteger(crc, endianness: .little)
        buffer.writeInteger(Self.formatVersion, endianness: .little)
        buffer.writeInteger(codec.rawValue, endianness: .little)
        buffer.writeInteger(UInt8(0), endianness: .little)  // flags, reserved
        buffer.writeInteger(leaderEpoch, endianness: .little)
        buffer.writeInteger(baseOffset.value, endianness: .little)
        buffer.writeInteger(recordCount, endianness: .little)
        buffer.writeInteger(payloadLength, endianness: .little)
        buffer.writeInteger(uncompressedLength, endianness: .little)
        buffer.writeInteger(UInt32(0), endianness: .little)  // reserved
        buffer.writeInteger(firstTimestampMs, endianness: .little)
        buffer.writeInteger(lastTimestampMs, endianness: .little)
    }

    /// Parses a header at the buffer's reader index without moving it.
    ///
    /// - Returns: the header, or the corruption that prevents reading it. Lengths are checked
    ///   against the format limits, so a caller may allocate `payloadLength` bytes afterwards.
    public static func peek(from buffer: ByteBuffer) -> Result<BatchHeader, CorruptionKind> {
        guard buffer.readableBytes >= size else {
            return .failure(.truncatedHeader(availableBytes: buffer.readableBytes))
        }
        // The header's 56 bytes copied out in one access (a `getInteger` per field cost about 140
        // instructions each: every reader peeks every batch it reads), then read as words.
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &bytes) { target in
            buffer.withUnsafeReadableBytes { source in
                target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[..<size]))
            }
        }
        let words = bytes
        func u32(_ at: Int) -> UInt32 {
            withUnsafeBytes(of: words) { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        }
        func u64(_ at: Int) -> UInt64 {
            withUnsafeBytes(of: words) { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        }
        let magic = u32(0)
        guard magic == Self.magic else { return .failure(.badMagic(found: magic)) }
        let crc = u32(4)
        let versionCodecFlags = u32(8)
        let version = UInt16(truncatingIfNeeded: versionCodecFlags)
        let codecByte = UInt8(truncatingIfNeeded: versionCodecFlags >> 16)
        let flags = UInt8(truncatingIfNeeded: versionCodecFlags >> 24)
        guard version == formatVersion else {
            return .failure(.badHeader("format version \(version), this build reads \(formatVersion)"))
        }
        guard let codec = BatchCodec(rawValue: codecByte) else {
            return .failure(.badHeader("unknown codec \(codecByte)"))
        }
        guard flags == 0 else { return .failure(.badHeader("reserved flags byte is \(flags), not 0")) }
        let header = BatchHeader(
            codec: codec,
            leaderEpoch: u32(12),
            baseOffset: Offset(u64(16)),
            recordCount: u32(24),
            payloadLength: u32(28),
            uncompressedLength: u32(32),
            firstTimestampMs: Int64(bitPattern: u64(40)),
            lastTimestampMs: Int64(bitPattern: u64(48)),
            crc: crc
        )
        guard u32(36) == 0 else { return .failure(.badHeader("reserved field is not 0")) }
        guard header.recordCount >= 1, header.recordCount <= recordCountLimit else {
            return .failure(.badHeader("record count \(header.recordCount) outside 1...\(recordCountLimit)"))
        }
        guard header.payloadLength <= payloadBytesLimit, header.uncompressedLength <= payloadBytesLimit else {
            return .failure(.badHeader("payload length \(header.payloadLength) or uncompressed length \(header.uncompressedLength) exceeds \(payloadBytesLimit)"))
        }
        guard UInt64(header.uncompressedLength) >= UInt64(header.recordCount) * UInt64(RecordFraming.prefixBytes) else {
            return .failure(.badHeader("uncompressed length \(header.uncompressedLength) cannot hold \(header.recordCount) records"))
        }
        if codec == .none, header.payloadLength != header.uncompressedLength {
            return .failure(.badHeader("uncompressed batch with payload length \(header.payloadLength) != \(header.uncompressedLength)"))
        }
        guard header.firstTimestampMs <= header.lastTimestampMs else {
            return .failure(.badHeader("first timestamp \(header.firstTimestampMs) after last \(header.lastTimestampMs)"))
        }
        return .success(header)
    }
}

/// Records inside a batch payload: each is a 4-byte little-endian length followed by that many
/// bytes. Records are opaque to the journal.
public enum RecordFraming {
    public static let prefixBytes = 4
}
