import CByteScan

/// Serializing without an intermediate array: the text is written once into scratch memory
/// (on the stack when small) and copied once into the string's own storage.
/// `SocketPacket.encode` and `JSONValue.serialized` use it.
struct JSONWriter {
    private let start: UnsafeMutablePointer<UInt8>
    private let end: UnsafeMutablePointer<UInt8>
    private var cursor: UnsafeMutablePointer<UInt8>
    /// Set when the scratch memory was too small; the caller retries with more.
    private(set) var overflowed = false

    private init(_ buffer: UnsafeMutableBufferPointer<UInt8>, base: UnsafeMutablePointer<UInt8>) {
        start = base
        end = base + buffer.count
        cursor = base
    }

    var count: Int { cursor - start }

    /// Runs `body` on a writer and returns what it wrote as a string; nil when `body`
    /// returns false (it met a binary value). Scratch memory starts at `capacity` bytes (or
    /// 1 KiB) and grows fourfold until the text fits.
    static func render(capacity hint: Int = 1_024, _ body: (inout JSONWriter) -> Bool) -> String? {
        var capacity = max(hint, 64)
        while true {
            let outcome: String?? = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buffer in
                guard let base = buffer.baseAddress else { return nil }
                var writer = JSONWriter(buffer, base: base)
                guard body(&writer) else { return .some(nil) }
                guard !writer.overflowed else { return nil }
                let count = writer.count
                // Valid UTF-8 (whole strings and ASCII); the string checks it once more.
                return .some(String(unsafeUninitializedCapacity: count) { target in
                    if let targetBase = target.baseAddress { targetBase.update(from: base, count: count) }
                    return count
                })
            }
            if let outcome { return outcome }
            capacity *= 4
        }
    }

    /// Runs `body` on a writer over `buffer` and returns how many bytes it wrote (0 when it
    /// needed more than `buffer` holds).
    @inline(__always)
    static func write(into buffer: UnsafeMutableBufferPointer<UInt8>, _ body: (inout JSONWriter) -> Void) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var writer = JSONWriter(buffer, base: base)
        body(&writer)
        return writer.overflowed ? 0 : writer.count
    }

    @inline(__always)
    mutating func put(_ byte: UInt8) {
        guard cursor < end else { overflowed = true; return }
        cursor.pointee = byte
        cursor += 1
    }

    @inline(__always)
    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        guard end - cursor >= bytes.count else { overflowed = true; return }
        chatlog_copy(cursor, base, bytes.count)
        cursor += bytes.count
    }

    @inline(__always)
    mutating func put(_ text: StaticString) {
        put(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func put(_ text: String) {
        text.withContiguousUTF8 { put($0) }
    }

    /// An unsigned integer in decimal.
    mutating func put(decimal value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for 24 digits, filled from the end
        withUnsafeMutableBytes(of: &digits) { buffer in
            var position = buffer.count
            var value = value
            repeat {
                position -= 1
                buffer[position] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            } while value > 0
            put(UnsafeBufferPointer(rebasing: buffer.assumingMemoryBound(to: UInt8.self)[position...]))
        }
    }

    /// A string quoted and escaped: `"`, `\` and control characters; the rest as is.
    mutating func putQuoted(_ string: String) {
        string.withContiguousUTF8 { putQuoted($0) }
    }

    /// UTF-8 bytes as a quoted and escaped JSON string.
    mutating func putQuoted(_ bytes: UnsafeBufferPointer<UInt8>) {
        put(UInt8(ascii: "\""))
        // Most strings need no escape: copied and checked in one pass.
        if let base = bytes.baseAddress, end - cursor > bytes.count, chatlog_json_copy_plain(cursor, base, bytes.count) != 0 {
            cursor += bytes.count
            cursor.pointee = UInt8(ascii: "\"")
            cursor += 1
            return
        }
        var runStart = 0
        while true {
            let index = ByteScan.firstSpecialIndex(in: bytes, from: runStart)
            put(UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
            guard index < bytes.count else { break }
            let byte = bytes[index]
            runStart = index + 1
            put(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""): put(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): put(UInt8(ascii: "\\"))
            case 0x0A: put(UInt8(ascii: "n"))
            case 0x0D: put(UInt8(ascii: "r"))
            case 0x09: put(UInt8(ascii: "t"))
            case 0x08: put(UInt8(ascii: "b"))
            case 0x0C: put(UInt8(ascii: "f"))
            default:
                let hex: StaticString = "0123456789abcdef"
                put("u00")
                put(hex.utf8Start[Int(byte >> 4)])
                put(hex.utf8Start[Int(byte & 0xF)])
            }
        }
        put(UInt8(ascii: "\""))
    }
}

extension JSONValue {
    /// Writes the JSON text; returns false at a binary value (it must become an attachment
    /// placeholder first), leaving the writer partly written.
    func write(to writer: inout JSONWriter) -> Bool {
        switch self {
        case .null:
            writer.put("null")
        case .bool(let value):
            writer.put(value ? "true" : "false")
        case .number(let value):
            // Integers JavaScript holds exactly are digits; other numbers as `format` prints.
            if value.isFinite, value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
                if value < 0 { writer.put(UInt8(ascii: "-")) }
                writer.put(decimal: UInt64(abs(value)))
            } else {
                writer.put(Self.format(value))
            }
        case .string(let value):
            writer.putQuoted(value)
        case .array(let items):
            writer.put(UInt8(ascii: "["))
            var first = true
            for item in items {
                if !first { writer.put(UInt8(ascii: ",")) }
                first = false
                guard item.write(to: &writer) else { return false }
            }
            writer.put(UInt8(ascii: "]"))
        case .object(let members):
            writer.put(UInt8(ascii: "{"))
            var first = true
            for (key, value) in members {
                if !first { writer.put(UInt8(ascii: ",")) }
                first = false
                writer.putQuoted(key)
                writer.put(UInt8(ascii: ":"))
                guard value.write(to: &writer) else { return false }
            }
            writer.put(UInt8(ascii: "}"))
        case .binary:
            return false
        }
        return true
    }
}
