/// Values by the exact bytes of short names, for replay's placer: open addressing over a
/// byte arena, with a seeded multiply-xorshift hash eight bytes at a time. It only speeds up
/// lookups whose answers come from a dictionary of names (it is filled from one), so it needs
/// no notion of canonical equivalence. Grows with the names it holds, as that dictionary does.
struct IdentifierCache: Sendable {
    private struct Entry: Sendable {
        var hash: UInt64
        var start: UInt32
        var length: UInt32
        var value: UInt32
    }

    private var arena: [UInt8] = []
    private var entries: [Entry] = []
    /// Per index slot: the entry's position + 1, or 0 when empty; a power of two in size, at
    /// most half full.
    private var slots: [UInt32] = []
    /// Per process, so that names cannot be chosen to collide.
    private let seed: UInt64

    init() {
        var generator = SystemRandomNumberGenerator()
        seed = generator.next()
    }

    func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hash = seed ^ UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15
        func mix(_ word: UInt64) {
            hash = (hash ^ word) &* 0xBF58_476D_1CE4_E5B9
            hash ^= hash >> 31
        }
        guard let base = bytes.baseAddress else { return hash }
        let raw = UnsafeRawPointer(base)
        var index = 0
        while index + 8 <= bytes.count {
            mix(raw.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            index += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.count {
            tail |= UInt64(base[index]) << shift
            shift += 8
            index += 1
        }
        mix(tail)
        return hash ^ (hash >> 29)
    }

    func value(for bytes: UnsafeBufferPointer<UInt8>) -> UInt32? {
        guard !slots.isEmpty else { return nil }
        let hash = hash(bytes)
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let stored = slots[slot]
            if stored == 0 { return nil }
            let entry = entries[Int(stored) - 1]
            if entry.hash == hash, Int(entry.length) == bytes.count, equal(entry, bytes) { return entry.value }
            slot = (slot + 1) & mask
        }
    }

    private func equal(_ entry: Entry, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        arena.withUnsafeBufferPointer { arena in
            let start = Int(entry.start)
            for offset in 0..<bytes.count where arena[start + offset] != bytes[offset] { return false }
            return true
        }
    }

    /// Adds a name that is not in the cache.
    mutating func insert(_ bytes: UnsafeBufferPointer<UInt8>, value: UInt32) {
        if (entries.count + 1) * 2 > slots.count { grow() }
        let entry = Entry(hash: hash(bytes), start: UInt32(arena.count), length: UInt32(bytes.count), value: value)
        arena.append(contentsOf: bytes)
        entries.append(entry)
        place(entry.hash, position: entries.count - 1)
    }

    private mutating func place(_ hash: UInt64, position: Int) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = UInt32(position + 1)
    }

    private mutating func grow() {
        slots = Array(repeating: 0, count: max(16, slots.count * 2))
        for (position, entry) in entries.enumerated() { place(entry.hash, position: position) }
    }
}
