#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The users a message names with `@username`: what makes the server tell them (`mentioned`)
/// and count it in their `my-groups` entry.
///
/// A mention is `@` at the start of the text or after a space, followed by the username up to
/// the next white space; punctuation that ends a sentence or closes a bracket after it
/// (`. , ; : ! ? ) ] } ' "`) is not part of it. So a username with spaces cannot be mentioned,
/// and one that ends in such punctuation only when followed by more of it. Pure.
public enum Mentions {
    /// Most distinct users one message mentions; later names are not mentions.
    public static let perMessageMax = 20

    /// The users `text` mentions, each once, in the order first named, at most `perMessageMax`.
    public static func names(in text: String) -> [UserID] {
        // Through the string's contiguous bytes: `utf8.contains` walked them one by one through
        // the generic sequence (about 1,500 instructions for a chat message, on every send).
        let mayMention = text.utf8.withContiguousStorageIfAvailable(Self.mayMention) ?? text.utf8.contains(UInt8(ascii: "@"))
        guard mayMention else { return [] }
        var names: [UserID] = []
        var seen: Set<UserID> = []
        for word in text.split(whereSeparator: { $0.isWhitespace }) where word.first == "@" {
            var name = word.dropFirst()
            while let last = name.last, Self.trailing.contains(last) { name = name.dropLast() }
            guard let user = UserID(String(name)), seen.insert(user).inserted else { continue }
            names.append(user)
            if names.count == perMessageMax { break }
        }
        return names
    }

    /// Whether the message bytes may mention anyone (they hold an `@`): the cheap test before
    /// `names(in:)`.
    public static func mayMention(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = text.baseAddress else { return false }
        return memchr(base, Int32(UInt8(ascii: "@")), text.count) != nil
    }

    static let trailing: Set<Character> = [".", ",", ";", ":", "!", "?", ")", "]", "}", "'", "\""]
}
