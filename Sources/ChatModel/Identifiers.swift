import Foundation

/// A room's identifier, as clients name it (the tutorial's `group`): 1 to `maxBytes` bytes of
/// UTF-8 in Unicode normalization form C, with no control characters.
///
/// Why NFC: Swift compares and hashes strings by canonical equivalence, so "\u{212A}" (the
/// Kelvin sign) equalled "K" and "jose\u{301}" equalled "jos\u{E9}", and a token for one
/// user acted as another. Two NFC strings are canonically equivalent only when their bytes
/// are equal, so with every identifier required in NFC, equality here, in dictionaries and in
/// SQLite (which compares bytes) is the same relation. Identifiers in another form are refused
/// where they come in; events already in a journal are taken as they are.
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

    /// The room of an event about no room (`tokensRevoked`): empty, so never a valid id nor
    /// one of a room.
    public static let none = RoomID(unchecked: "")

    public static func < (lhs: RoomID, rhs: RoomID) -> Bool { lhs.value < rhs.value }
    public var description: String { value }

    static func isValid(_ value: String, maxBytes: Int) -> Bool {
        let utf8 = value.utf8
        guard !utf8.isEmpty, utf8.count <= maxBytes else { return false }
        return !containsControlCharacters(value, allowNewlines: false) && isNFC(value)
    }

    /// Whether `value` is in Unicode normalization form C (ASCII always is).
    static func isNFC(_ value: String) -> Bool {
        if value.utf8.allSatisfy({ $0 < 0x80 }) { return true }
        return value.precomposedStringWithCanonicalMapping.utf8.elementsEqual(value.utf8)
    }
}

/// A user's identifier: who acts, who is invited. 1 to `maxBytes` bytes of UTF-8 in NFC with
/// no control characters (see `RoomID` for why NFC). Where it comes from (a signed token, or a development-mode name) is the
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
        // Most texts are printable ASCII throughout: checked eight bytes at a time.
        if UTF8Validation.isPrintableASCII(bytes) { return false }
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
