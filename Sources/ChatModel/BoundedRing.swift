/// The last `capacity` elements appended, oldest first. Appending to a full ring drops the
/// oldest. A value type with bounded memory; equality compares the elements in order.
///
/// Inlinable, so that other modules (the snapshot decoder, replay) get code specialized for
/// their element type instead of generic code that looks up type metadata on every call.
@frozen
public struct BoundedRing<Element: Sendable>: Sendable, RandomAccessCollection {
    public let capacity: Int
    @usableFromInline var storage: [Element] = []
    /// Index in `storage` of the oldest element once the ring is full.
    @usableFromInline var head = 0

    @inlinable
    public init(capacity: Int) {
        precondition(capacity > 0, "a ring holds at least one element, capacity \(capacity)")
        self.capacity = capacity
    }

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { storage.count }

    @inlinable
    public subscript(position: Int) -> Element {
        get { storage[physical(position)] }
        set { storage[physical(position)] = newValue }
    }

    @inlinable
    func physical(_ position: Int) -> Int {
        precondition(position >= 0 && position < storage.count, "ring index \(position) out of 0..<\(storage.count)")
        let index = head + position
        return index < storage.count ? index : index - storage.count
    }

    @inlinable
    public mutating func append(_ element: Element) {
        if storage.count < capacity {
            storage.append(element)
        } else {
            storage[head] = element
            head = head + 1 == capacity ? 0 : head + 1
        }
    }
}

extension BoundedRing: Equatable where Element: Equatable {
    @inlinable
    public static func == (lhs: BoundedRing, rhs: BoundedRing) -> Bool {
        lhs.capacity == rhs.capacity && lhs.elementsEqual(rhs)
    }
}
