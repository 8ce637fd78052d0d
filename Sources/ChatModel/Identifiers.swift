/// A room's identifier, as clients name it (the tutorial's `group`): 1 to `maxBytes` bytes of
/// UTF-8 with no control characters.
public struct RoomID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let maxBytes = 128
    public let value: String

    /// - Returns: nil when `value` is empty, too long or contains control characters.
    public init?(_ value: String) {
        guard Self.isValid(value, maxBytes: Self.maxBytes) else { return nil }
        self.value = value
    }

    /// For decoding already-validated bytes.
    init(unchecked value: String) {
        self.value = value
    }

    public static func < (lhs: RoomID, rhs: RoomID) -> Bool { lhs.value < rhs.value }
    public var description: String { value }

    static func isValid(_ value: String, maxBytes: Int) -> Bool {
        let utf8 = value.utf8
        guard !utf8.isEmpty, utf8.count <= maxBytes else { return false }
        return !containsControlCharacters(value, allowNewlines: false)
    }
}

/// A user's identifier: who acts, who is invited. 1 to `maxBytes` bytes of UTF-8 with no
/// control characters. Where it comes from (a signed token, or a development-mode name) is the
/// server's business.
public struct UserID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let maxBytes = 64
    public let value: String

    public init?(_ value: String) {
        guard RoomID.isValid(value, maxBytes: Self.maxBytes) else { return nil }
        self.value = value
    }

    init(unchecked value: String) {
        self.value = value
    }

    public static func < (lhs: UserID, rhs: UserID) -> Bool { lhs.value < rhs.value }
    public var description: String { value }
}

/// A message's identity: the journal offset of its `messageSent` event. Offsets are unique
/// and increase, so a message id also orders messages.
public struct MessageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let offset: UInt64

    public init(_ offset: UInt64) {
        self.offset = offset
    }

    public static func < (lhs: MessageID, rhs: MessageID) -> Bool { lhs.offset < rhs.offset }
    public var description: String { String(offset) }
}

/// Whether `text` contains a Unicode control character (category Cc), optionally allowing
/// newline and tab. Checks bytes directly while the text is ASCII, which identifiers
/// nearly always are; falls back to scalar properties otherwise.
func containsControlCharacters(_ text: String, allowNewlines: Bool) -> Bool {
    var text = text
    let ascii: Bool? = text.withUTF8 { bytes in
        for byte in bytes {
            if byte >= 0x80 { return nil }
            if byte < 0x20 || byte == 0x7F {
                if allowNewlines && (byte == 0x0A || byte == 0x09) { continue }
                return true
            }
        }
        return false
    }
    if let ascii { return ascii }
    return text.unicodeScalars.contains { scalar in
        scalar.properties.generalCategory == .control && !(allowNewlines && (scalar == "\n" || scalar == "\t"))
    }
}
