import NIOCore

/// One record as read back: its offset and its bytes.
///
/// `payload` is a slice of the batch's decompressed buffer; holding it keeps that buffer alive.
public struct JournalRecord: Sendable {
    public let offset: Offset
    public let payload: ByteBuffer

    public init(offset: Offset, payload: ByteBuffer) {
        self.offset = offset
        self.payload = payload
    }
}

/// A batch read back from a segment: its header, where it was, and its decompressed records.
///
/// A value type; its records share one buffer, so iterating them allocates nothing per record.
public struct RecordBatch: Sendable {
    public let header: BatchHeader
    /// Byte position of the batch header in its segment file.
    public let position: FilePosition
    /// The framed records (length prefix, bytes, ...), already checked against the header.
    public let framedRecords: ByteBuffer

    public var baseOffset: Offset { header.baseOffset }
    public var nextOffset: Offset { header.nextOffset }

    /// The batch's records in offset order.
    public var records: Records { Records(framed: framedRecords, baseOffset: header.baseOffset) }

    /// Calls `body` with each record's offset and bytes, in order, without creating a buffer
    /// per record: the fast path for replay. The bytes are valid only during the call.
    @inlinable
    public func forEachRecord(_ body: (Offset, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try framedRecords.withUnsafeReadableBytes { raw in
            var cursor = 0
            var offset = header.baseOffset
            // The framing was validated when the batch was decoded.
            while cursor + RecordFraming.prefixBytes <= raw.count {
                let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: cursor, as: UInt32.self)))
                cursor += RecordFraming.prefixBytes
                try body(offset, UnsafeRawBufferPointer(rebasing: raw[cursor..<(cursor + length)]))
                cursor += length
                offset = offset.advanced(by: 1)
            }
        }
    }

    public struct Records: Sequence, Sendable {
        let framed: ByteBuffer
        let baseOffset: Offset

        public func makeIterator() -> Iterator {
            Iterator(framed: framed, offset: baseOffset)
        }

        public struct Iterator: IteratorProtocol, Sendable {
            @usableFromInline var framed: ByteBuffer
            @usableFromInline var offset: Offset

            init(framed: ByteBuffer, offset: Offset) {
                self.framed = framed
                self.offset = offset
            }

            @inlinable
            public mutating func next() -> JournalRecord? {
                // The framing was validated when the batch was decoded.
                guard let length = framed.readInteger(endianness: .little, as: UInt32.self),
                      let payload = framed.readSlice(length: Int(length))
                else { return nil }
                defer { offset = offset.advanced(by: 1) }
                return JournalRecord(offset: offset, payload: payload)
            }
        }
    }
}

/// Turns framed records into on-disk batch bytes and back. Stateless.
enum BatchCodecIO {
    /// Appends header and payload of one batch to `output`.
    ///
    /// - Parameters:
    ///   - framed: the framed records (length prefix + bytes each), `count` of them.
    ///   - scratch: reused compression buffer, grown as needed.
    /// - Returns: the header as written (CRC set).
    static func encode(
        framed: ByteBuffer,
        count: Int,
        baseOffset: Offset,
        leaderEpoch: UInt32,
        firstTimestampMs: Int64,
        lastTimestampMs: Int64,
        scratch: inout [UInt8],
        into output: inout ByteBuffer
    ) -> BatchHeader {
        precondition(count > 0 && framed.readableBytes >= count * RecordFraming.prefixBytes,
                     "batch of \(count) records in \(framed.readableBytes) bytes")
        let bound = LZ4Codec.compressBound(framed.readableBytes)
        if scratch.count < bound {
            scratch = [UInt8](repeating: 0, count: bound)
        }
        // Store uncompressed when LZ4 does not save anything.
        let compressedBytes: Int? = framed.withUnsafeReadableBytes { source in
            scratch.withUnsafeMutableBytes { destination in
                LZ4Codec.compress(source, into: UnsafeMutableRawBufferPointer(rebasing: destination[0..<(framed.readableBytes - 1)]))
            }
        }
        var header = BatchHeader(
            codec: compressedBytes == nil ? .none : .lz4,
            leaderEpoch: leaderEpoch,
            baseOffset: baseOffset,
            recordCount: UInt32(count),
            payloadLength: UInt32(compressedBytes ?? framed.readableBytes),
            uncompressedLength: UInt32(framed.readableBytes),
            firstTimestampMs: firstTimestampMs,
            lastTimestampMs: lastTimestampMs
        )
        let headerStart = output.writerIndex
        header.write(to: &output)
        if let compressedBytes {
            _ = scratch.withUnsafeBytes { output.writeBytes(UnsafeRawBufferPointer(rebasing: $0[0..<compressedBytes])) }
        } else {
            output.writeImmutableBuffer(framed)
        }
        let crc = output.withUnsafeReadableBytes { bytes in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(headerStart - output.readerIndex + BatchHeader.checksummedFrom)...]))
        }
        header.crc = crc
        output.setInteger(crc, at: headerStart + 4, endianness: .little)
        return header
    }

    /// The CRC of a batch whose header starts at the reader index of `bytes` and whose payload
    /// follows it.
    static func checksum(ofBatchIn bytes: ByteBuffer, header: BatchHeader) -> UInt32 {
        bytes.withUnsafeReadableBytes { raw in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[BatchHeader.checksummedFrom..<header.totalBytes]))
        }
    }

    /// Decompresses (or copies) the records of a batch whose bytes (header and payload, CRC
    /// already verified) start at the reader index of `bytes`, appending them to `arena`, and
    /// checks their framing.
    ///
    /// Takes no slice of `arena`, so a caller that decodes several batches in a row and slices
    /// afterwards never makes `arena` copy itself.
    /// - Returns: where in `arena` the framed records start.
    static func appendRecords(
        ofBatchIn bytes: ByteBuffer,
        header: BatchHeader,
        to arena: inout ByteBuffer
    ) -> Result<Int, CorruptionKind> {
        let start = arena.writerIndex
        let length = Int(header.uncompressedLength)
        var ok = false
        arena.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { destination in
            let target = UnsafeMutableRawBufferPointer(rebasing: destination[0..<length])
            ok = bytes.withUnsafeReadableBytes { raw in
                let payload = UnsafeRawBufferPointer(rebasing: raw[BatchHeader.size..<header.totalBytes])
                switch header.codec {
                case .none:
                    target.copyMemory(from: payload)
                    return true
                case .lz4:
                    return LZ4Codec.decompress(payload, into: target)
                }
            }
            return ok ? length : 0
        }
        guard ok else { return .failure(.decompressionFailed) }
        if let problem = checkFraming(arena, from: start, length: length, recordCount: Int(header.recordCount)) {
            arena.moveWriterIndex(to: start)
            return .failure(problem)
        }
        return .success(start)
    }

    /// The records of one batch in a buffer of their own.
    static func decodeRecords(ofBatchIn bytes: ByteBuffer, header: BatchHeader) -> Result<ByteBuffer, CorruptionKind> {
        var arena = ByteBufferAllocator().buffer(capacity: Int(header.uncompressedLength))
        return appendRecords(ofBatchIn: bytes, header: header, to: &arena).map { _ in arena }
    }

    /// Walks the length prefixes: they must describe exactly `recordCount` records filling the
    /// buffer.
    static func checkFraming(_ framed: ByteBuffer, from start: Int, length: Int, recordCount: Int) -> CorruptionKind? {
        var cursor = start
        let end = start + length
        for index in 0..<recordCount {
            guard let length = framed.getInteger(at: cursor, endianness: .little, as: UInt32.self) else {
                return .badRecordFraming("record \(index) of \(recordCount): length prefix past the end of the payload")
            }
            cursor += RecordFraming.prefixBytes
            guard Int(length) <= end - cursor else {
                return .badRecordFraming("record \(index) of \(recordCount): length \(length) runs past the end of the payload")
            }
            cursor += Int(length)
        }
        guard cursor == end else {
            return .badRecordFraming("\(end - cursor) bytes after the last of \(recordCount) records")
        }
        return nil
    }
}
