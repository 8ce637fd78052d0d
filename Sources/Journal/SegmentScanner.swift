import NIOCore

/// Walks the batches of one segment file from a position, checking each one.
///
/// Used by recovery, by `verify`, by `inspect` and by reads. It reads ahead in chunks of
/// `readAheadBytes` (at least one whole batch), never past `endPosition`, and checks every
/// length against the format limits before allocating for it. Its window buffer is compacted
/// in place and can be handed from one scanner to the next (`window`), so a reader that drops
/// each batch's bytes before the next step allocates nothing in steady state. Not
/// thread-safe; a value owned by one caller.
struct SegmentScanner {
    enum Step {
        /// A batch whose header and CRC-32C check out, with its bytes (header and payload);
        /// `BatchCodecIO.decodeRecords` decompresses them.
        case batch(BatchHeader, FilePosition, bytes: ByteBuffer)
        /// `endPosition` reached exactly at a batch boundary.
        case end
        /// The bytes at this position are not a valid batch.
        case corrupt(FilePosition, CorruptionKind)
    }

    let file: FileHandle
    let endPosition: FilePosition
    let readAheadBytes: Int
    private(set) var position: FilePosition
    /// The base offset the next batch must have.
    private(set) var expectedOffset: Offset
    /// File bytes from `windowStart` on. Reuse it for the next scanner to avoid allocating.
    private(set) var window: ByteBuffer
    private var windowStart: FilePosition

    init(
        file: FileHandle,
        from position: FilePosition,
        to endPosition: FilePosition,
        expectedOffset: Offset,
        readAheadBytes: Int = 1 << 20,
        window: ByteBuffer = ByteBuffer()
    ) {
        self.file = file
        self.position = position
        self.endPosition = endPosition
        self.expectedOffset = expectedOffset
        self.readAheadBytes = readAheadBytes
        var window = window
        window.clear()
        self.window = window
        self.windowStart = position
    }

    /// Makes the window hold `count` bytes from `position`, or as many as the file has.
    /// - Returns: the bytes available from `position`, at most `count`.
    private mutating func fill(_ count: Int) throws(JournalError) -> Int {
        let windowEnd = windowStart.advanced(by: window.readableBytes)
        let inWindow = position >= windowStart && position <= windowEnd
        let have = inWindow ? Int(windowEnd.value - position.value) : 0
        if have >= count { return count }
        let wanted = min(max(count, readAheadBytes), Int(endPosition.value - position.value))
        guard have < wanted else { return have }
        // Keep the unread tail, moved to the front in place; then read after it.
        window.moveReaderIndex(to: inWindow ? window.readerIndex + Int(position.value - windowStart.value) : window.writerIndex)
        window.discardReadBytes()
        windowStart = position
        let read = try file.read(into: &window, at: position.advanced(by: have), count: wanted - have)
        return min(count, have + read)
    }

    /// The window's bytes from `position`, `count` of them (already made available by `fill`).
    private func bytes(_ count: Int) -> ByteBuffer {
        guard let slice = window.getSlice(at: window.readerIndex + Int(position.value - windowStart.value), length: count) else {
            preconditionFailure("fill made \(count) bytes available at \(position)")
        }
        return slice
    }

    /// The next valid batch, or nil at the end; a batch that is not valid is an error naming
    /// the file, the position and the offset (for reads, which never cut anything).
    mutating func nextBatch() throws(JournalError) -> (header: BatchHeader, position: FilePosition, bytes: ByteBuffer)? {
        switch try next() {
        case .end:
            return nil
        case .corrupt(let position, let kind):
            throw .corrupt(CorruptionReport(file: file.path, position: position, expectedOffset: expectedOffset, kind: kind))
        case .batch(let header, let position, let bytes):
            return (header, position, bytes)
        }
    }

    mutating func next() throws(JournalError) -> Step {
        let remaining = endPosition.value - position.value
        if remaining == 0 { return .end }
        let headerAvailable = try fill(BatchHeader.size)
        guard headerAvailable == BatchHeader.size else {
            return .corrupt(position, .truncatedHeader(availableBytes: headerAvailable))
        }
        let header: BatchHeader
        switch BatchHeader.peek(from: bytes(BatchHeader.size)) {
        case .success(let parsed): header = parsed
        case .failure(let kind): return .corrupt(position, kind)
        }
        let total = header.totalBytes
        let available = try fill(total)
        guard available == total else {
            return .corrupt(position, .truncatedPayload(expectedBytes: Int(header.payloadLength),
                                                        availableBytes: available - BatchHeader.size))
        }
        let batchBytes = bytes(total)
        let computed = BatchCodecIO.checksum(ofBatchIn: batchBytes, header: header)
        guard computed == header.crc else {
            return .corrupt(position, .checksumMismatch(stored: header.crc, computed: computed))
        }
        // Offsets are checked after the CRC: a batch that checks out but starts elsewhere means
        // a gap or an overlap, not bit rot.
        guard header.baseOffset == expectedOffset else {
            return .corrupt(position, .offsetGap(expected: expectedOffset, found: header.baseOffset))
        }
        let batchPosition = position
        position = position.advanced(by: total)
        expectedOffset = header.nextOffset
        return .batch(header, batchPosition, bytes: batchBytes)
    }
}
