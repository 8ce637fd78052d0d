import CLZ4

/// liblz4 block compression of batch payloads. Stateless and thread-safe.
enum LZ4Codec {
    /// liblz4's speed/ratio knob; 1 is `LZ4_compress_default`. Measured on synthetic chat
    /// text, higher values cost more ratio than they save time (see docs/performance.md).
    static let acceleration: Int32 = 1

    /// The largest output `compress` can produce for `inputBytes` of input.
    static func compressBound(_ inputBytes: Int) -> Int {
        Int(LZ4_compressBound(Int32(clamping: inputBytes)))
    }

    /// Compresses `source` into `destination`.
    /// - Returns: bytes written, or nil when the output would not fit `destination`, in which
    ///   case the caller stores the payload uncompressed.
    static func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int? {
        guard let src = source.baseAddress, let dst = destination.baseAddress, source.count > 0 else { return nil }
        let written = LZ4_compress_fast(
            src.assumingMemoryBound(to: CChar.self),
            dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count),
            Int32(clamping: destination.count),
            acceleration
        )
        return written > 0 ? Int(written) : nil
    }

    /// Decompresses exactly `destination.count` bytes from `source`.
    /// - Returns: false when the block is malformed or does not produce exactly that many bytes.
    static func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        guard let src = source.baseAddress, let dst = destination.baseAddress else {
            return destination.count == 0 && source.count == 0
        }
        let produced = LZ4_decompress_safe(
            src.assumingMemoryBound(to: CChar.self),
            dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count),
            Int32(destination.count)
        )
        return Int(produced) == destination.count
    }
}
