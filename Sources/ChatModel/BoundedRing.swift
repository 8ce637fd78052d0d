/// The last `capacity` elements appended, oldest first. Appending to a full ring drops the
/// oldest. A value type with bounded memory; equality compares the elements in order.
public struct BoundedRing<Element: Sendable>: Sendable, RandomAccessCollection {
    public let capacity: Int
    private var storage: [Element] = []
    /// Index in `storage` of the oldest element once the ring is full.
    private var head = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "a ring holds at least one element, capacity \(capacity)")
        self.capacity = capacity
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.count }

    public subscript(position: Int) -> Element {
        get { storage[physical(position)] }
        set { storage[physical(position)] = newValue }
    }

    private func physical(_ position: Int) -> Int {
        precondition(position >= 0 && position < storage.count, "ring index \(position) out of 0..<\(storage.count)")
        let index = head + position
        return index < storage.count ? index : index - storage.count
    }

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
    public static func == (lhs: BoundedRing, rhs: BoundedRing) -> Bool {
        lhs.capacity == rhs.capacity && lhs.elementsEqual(rhs)
    }
}
