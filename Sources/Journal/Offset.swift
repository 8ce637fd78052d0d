/// A record's logical position in the journal: 0 for the first record ever appended, then one
/// more for each record, across batches and segments.
///
/// Offsets and byte positions (`FilePosition`) are distinct types so that one can never be
/// passed where the other is meant.
public struct Offset: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt64

    @inlinable
    public init(_ value: UInt64) {
        self.value = value
    }

    public static let zero = Offset(0)

    @inlinable
    public static func < (lhs: Offset, rhs: Offset) -> Bool {
        lhs.value < rhs.value
    }

    /// The offset `count` records after this one.
    @inlinable
    public func advanced(by count: UInt64) -> Offset {
        Offset(value + count)
    }

    /// The number of records from `other` up to (not including) this offset.
    @inlinable
    public func distance(from other: Offset) -> UInt64 {
        precondition(other <= self, "distance from \(other) to \(self) is negative")
        return value - other.value
    }

    public var description: String { String(value) }
}

/// A byte position inside one segment file.
public struct FilePosition: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: Int64

    @inlinable
    public init(_ value: Int64) {
        self.value = value
    }

    public static let zero = FilePosition(0)

    @inlinable
    public static func < (lhs: FilePosition, rhs: FilePosition) -> Bool {
        lhs.value < rhs.value
    }

    @inlinable
    public func advanced(by bytes: Int) -> FilePosition {
        FilePosition(value + Int64(bytes))
    }

    public var description: String { String(value) }
}

/// The range of offsets a single append was assigned: `first...last`, never empty.
public struct OffsetRange: Hashable, Sendable, CustomStringConvertible {
    public let first: Offset
    public let last: Offset

    public init(first: Offset, last: Offset) {
        precondition(first <= last, "offset range \(first)...\(last) is empty")
        self.first = first
        self.last = last
    }

    public var count: UInt64 { last.value - first.value + 1 }

    public var description: String { "\(first)...\(last)" }
}
