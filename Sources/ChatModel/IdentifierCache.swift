/// Values by the exact bytes of short names, for replay's placer: open addressing with a
/// seeded multiply-xorshift hash eight bytes at a time. It only speeds up lookups whose
/// answers come from a dictionary of names (it is filled from one), so it needs no notion of
/// canonical equivalence. Grows with the names it holds, as that dictionary does.
///
/// A slot holds the name's first sixteen bytes itself, so a lookup of a name that fits (most
/// ids) touches one slot and nothing else: one cache miss where a slot pointing to an entry
/// pointing to the name's bytes took three. Longer names keep the rest in an arena.
struct IdentifierCache: Sendable {
    /// 32 bytes: two to a cache line.
    private struct Slot: Sendable {
        var hash: UInt64 = 0
        var value: UInt32 = 0
        /// The name's length + 1; 0 for an empty slot.
        var lengthPlusOne: UInt32 = 0
        /// The name's first sixteen bytes, zero-padded; for a longer name, its first eight
        /// bytes and then where the rest starts in the arena.
        var head: UInt64 = 0
        var tail: UInt64 = 0
    }

    /// Names this long or shorter live in their slot.
    private static let inlineBytesMax = 16

    private var slots: [Slot] = []
    private var count = 0
    /// Bytes 8... of the names longer than `inlineBytesMax`.
    private var arena: [UInt8] = []
    /// Per process, so that names cannot be chosen to collide.
    private let seed: UInt64

    init() {
        var generator = SystemRandomNumberGenerator()
        seed = generator.next()
    }

    /// The name's hash and its first sixteen bytes as two little-endian words, zero-padded.
    private func key(_ bytes: UnsafeBufferPointer<UInt8>) -> (hash: UInt64, head: UInt64, tail: UInt64) {
        var hash = seed ^ UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15
        func mix(_ word: UInt64) {
            hash = (hash ^ word) &* 0xBF58_476D_1CE4_E5B9
            hash ^= hash >> 31
        }
        var words: (UInt64, UInt64) = (0, 0)
        guard let base = bytes.baseAddress else { return (hash, 0, 0) }
        let raw = UnsafeRawPointer(base)
        var index = 0
        while index + 8 <= bytes.count {
            let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            if index == 0 { words.0 = word } else if index == 8 { words.1 = word }
            mix(word)
            index += 8
        }
        var last: UInt64 = 0
        var shift: UInt64 = 0
        let lastStart = index
        while index < bytes.count {
            last |= UInt64(base[index]) << shift
            shift += 8
            index += 1
        }
        if lastStart == 0 { words.0 = last } else if lastStart == 8 { words.1 = last }
        mix(last)
        return (hash ^ (hash >> 29), words.0, words.1)
    }

    func value(for bytes: UnsafeBufferPointer<UInt8>) -> UInt32? {
        guard !slots.isEmpty else { return nil }
        let key = key(bytes)
        let lengthPlusOne = UInt32(truncatingIfNeeded: bytes.count &+ 1)
        return slots.withUnsafeBufferPointer { slots in
            let mask = slots.count - 1
            var index = Int(truncatingIfNeeded: key.hash) & mask
            while true {
                let slot = slots[index]
                if slot.lengthPlusOne == 0 { return nil }
                if slot.hash == key.hash, slot.lengthPlusOne == lengthPlusOne, slot.head == key.head,
                   bytes.count <= Self.inlineBytesMax ? slot.tail == key.tail : longNameEqual(slot, bytes) {
                    return slot.value
                }
                index = (index + 1) & mask
            }
        }
    }

    /// Bytes 8... of a long name against its slot's arena bytes (the first eight matched).
    private func longNameEqual(_ slot: Slot, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        arena.withUnsafeBufferPointer { arena in
            let start = Int(slot.tail)
            for offset in 8..<bytes.count where arena[start + offset - 8] != bytes[offset] { return false }
            return true
        }
    }

    /// Adds a name that is not in the cache.
    mutating func insert(_ bytes: UnsafeBufferPointer<UInt8>, value: UInt32) {
        // At most three quarters full: short probes, and half the memory of a half-full table.
        if (count + 1) * 4 > slots.count * 3 { grow() }
        let key = key(bytes)
        var slot = Slot(hash: key.hash, value: value, lengthPlusOne: UInt32(truncatingIfNeeded: bytes.count &+ 1),
                        head: key.head, tail: key.tail)
        if bytes.count > Self.inlineBytesMax {
            slot.tail = UInt64(arena.count)
            arena.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[8...]))
        }
        place(slot)
        count += 1
    }

    private mutating func place(_ slot: Slot) {
        let mask = slots.count - 1
        var index = Int(truncatingIfNeeded: slot.hash) & mask
        while slots[index].lengthPlusOne != 0 { index = (index + 1) & mask }
        slots[index] = slot
    }

    private mutating func grow() {
        let old = slots
        slots = Array(repeating: Slot(), count: max(16, slots.count * 2))
        for slot in old where slot.lengthPlusOne != 0 { place(slot) }
    }
}
