import CCRC32C
import NIOCore

/// CRC-32C (Castagnoli), the checksum of every record batch.
///
/// Uses the CPU's CRC-32C instructions (SSE4.2 `crc32`, ARMv8 CRC) when available and a
/// slicing-by-8 table otherwise. Stateless and thread-safe.
public enum CRC32C {
    /// The CRC of `bytes`, continuing from `crc` (0 to start a new checksum).
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return chatlog_crc32c(crc, base, bytes.count)
    }

    /// The CRC of `bytes`, continuing from `crc` (0 to start a new checksum).
    @inlinable
    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The CRC of the readable bytes of `buffer`, continuing from `crc`.
    @inlinable
    public static func checksum(readableBytesOf buffer: ByteBuffer, continuing crc: UInt32 = 0) -> UInt32 {
        buffer.withUnsafeReadableBytes { checksum($0, continuing: crc) }
    }

    /// Whether the hardware implementation is in use on this CPU.
    public static var usesHardware: Bool {
        chatlog_crc32c_hardware_available() != 0
    }
}

