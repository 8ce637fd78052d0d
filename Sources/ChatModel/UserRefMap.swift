/// A map from users (`RoomState.UserRef`) to values: each room's per-sender client-id windows.
///
/// Replay looks a sender up for every message; Swift's `Dictionary` hashes every key with
/// SipHash, which cost more than the rest of the lookup. This map keeps its entries in a dense
/// array and finds them through an open-addressing index (linear probing, at most half full)
/// with a multiplicative hash of the user's index. Removal (rare: a room over its cap of
/// senders) moves the last entry into the gap and rebuilds the index. Iteration is in
/// insertion order, but for removals; equality ignores order.
///
/// Inlinable, so that other modules (the snapshot codec) get code specialized for their value
/// type.
@frozen
public struct UserRefMap<Value: Sendable>: Sendable, Sequence {
    public typealias Element = (key: RoomState.UserRef, value: Value)

    @usableFromInline var entries: [Element] = []
    /// Per index slot: the entry's position + 1, or 0 when empty. A power of two in size.
    @usableFromInline var slots: [UInt32] = []

    @inlinable
    public init() {}

    @inlinable public var count: Int { entries.count }
    @inlinable public var isEmpty: Bool { entries.isEmpty }

    @inlinable
    public func makeIterator() -> IndexingIterator<[Element]> { entries.makeIterator() }

    @inlinable
    public subscript(key: RoomState.UserRef) -> Value? {
        position(of: key).map { entries[$0].value }
    }

    /// Sets the value of `key`, adding the key if it is new.
    @inlinable
    public mutating func updateValue(_ value: Value, forKey key: RoomState.UserRef) {
        if let position = position(of: key) {
            entries[position].value = value
        } else {
            insert(key, value)
        }
    }

    /// Runs `body` on the value of `key` in place, adding `makeDefault()` first if the key is
    /// new.
    @inlinable
    public mutating func modify<R>(_ key: RoomState.UserRef, default makeDefault: () -> Value, _ body: (inout Value) -> R) -> R {
        let position = position(of: key) ?? insert(key, makeDefault())
        return body(&entries[position].value)
    }

    /// Removes `key` and its value, if present: O(count), for the rare eviction.
    public mutating func removeValue(forKey key: RoomState.UserRef) {
        guard let position = position(of: key) else { return }
        entries.swapAt(position, entries.count - 1)
        entries.removeLast()
        slots = Array(repeating: 0, count: slots.count)
        for (index, entry) in entries.enumerated() { place(entry.key, position: index) }
    }

    @inlinable
    static func home(of key: RoomState.UserRef, mask: Int) -> Int {
        // Fibonacci hashing: the high bits of the product are well mixed.
        Int(truncatingIfNeeded: (UInt64(key.index) &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    @inlinable
    func position(of key: RoomState.UserRef) -> Int? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        var slot = Self.home(of: key, mask: mask)
        while true {
            let stored = slots[slot]
            if stored == 0 { return nil }
            if entries[Int(stored) - 1].key == key { return Int(stored) - 1 }
            slot = (slot + 1) & mask
        }
    }

    /// Appends an entry for a key that is not in the map; returns its position.
    @inlinable
    @discardableResult
    mutating func insert(_ key: RoomState.UserRef, _ value: Value) -> Int {
        if (entries.count + 1) * 2 > slots.count { grow() }
        entries.append((key, value))
        place(key, position: entries.count - 1)
        return entries.count - 1
    }

    @inlinable
    mutating func place(_ key: RoomState.UserRef, position: Int) {
        let mask = slots.count - 1
        var slot = Self.home(of: key, mask: mask)
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = UInt32(position + 1)
    }

    @inlinable
    mutating func grow() {
        slots = Array(repeating: 0, count: Swift.max(8, slots.count * 2))
        for (position, entry) in entries.enumerated() { place(entry.key, position: position) }
    }
}

extension UserRefMap: Equatable where Value: Equatable {
    @inlinable
    public static func == (lhs: UserRefMap, rhs: UserRefMap) -> Bool {
        lhs.count == rhs.count && lhs.entries.allSatisfy { rhs[$0.key] == $0.value }
    }
}
