import NIOCore

/// Deterministic, realistic chat events for benchmarks: JSON objects with a room, a user, a
/// client message id, a timestamp and a sentence of everyday chat words, varied in length
/// around a target size. Not repeated filler: LZ4 gets only what real chat text offers.
struct SyntheticChat {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed &+ 0x9E37_79B9_7F4A_7C15
    }

    private mutating func nextRandom() -> UInt64 {
        // SplitMix64.
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private mutating func pick<T>(_ items: [T]) -> T {
        items[Int(nextRandom() % UInt64(items.count))]
    }

    static let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
                        "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "maria.k",
                        "j.chen", "sam_t", "noor", "lukas", "priya", "tomasz", "yuki", "ines", "kwame", "zoe"]
    static let rooms = ["general", "random", "design", "backend", "frontend", "ops", "support", "sales", "hiring",
                        "lunch", "release-train", "incident-4411", "mobile", "data", "security", "standup"]
    static let words = [
        "ok", "yes", "no", "sure", "thanks", "thank", "you", "I", "I'll", "we", "we're", "they", "it", "it's", "that",
        "this", "the", "a", "an", "and", "but", "or", "so", "if", "when", "then", "now", "later", "today", "tomorrow",
        "tonight", "morning", "after", "before", "lunch", "coffee", "meeting", "call", "standup", "sync", "review",
        "deploy", "release", "build", "test", "tests", "fix", "bug", "issue", "ticket", "branch", "merge", "PR",
        "main", "staging", "prod", "server", "client", "app", "page", "login", "error", "logs", "dashboard", "metrics",
        "latency", "users", "customer", "design", "mockup", "figma", "doc", "notes", "slides", "plan", "roadmap",
        "sprint", "estimate", "done", "working", "on", "looking", "into", "can", "could", "should", "would", "will",
        "please", "check", "send", "share", "push", "pull", "rebase", "ship", "it", "looks", "good", "great", "nice",
        "weird", "broken", "flaky", "slow", "fast", "again", "still", "just", "maybe", "probably", "definitely",
        "back", "in", "out", "up", "down", "five", "ten", "minutes", "hour", "week", "Friday", "Monday", "everyone",
        "team", "folks", "anyone", "someone", "know", "think", "see", "saw", "need", "want", "have", "has", "had",
        "got", "get", "go", "going", "let's", "lol", "haha", "👍", "🎉", "brb", "afk", "np", "ty", "ping", "me",
    ]

    /// A sentence of everyday chat words of about `targetBytes` bytes.
    mutating func sentence(targetBytes: Int) -> String {
        words(bytes: max(4, targetBytes + Int(nextRandom() % 61) - 30))
    }

    /// Chat words, capitalized and punctuated, until the text has at least `bytes` bytes.
    private mutating func words(bytes length: Int) -> String {
        var text = ""
        var capitalize = true
        while text.utf8.count < length {
            var word = pick(Self.words)
            if capitalize, let first = word.first { word = first.uppercased() + word.dropFirst() }
            capitalize = false
            text += text.isEmpty ? word : " " + word
            if nextRandom() % 9 == 0 {
                text += pick([".", "?", "!", ","])
                capitalize = text.last != ","
            }
        }
        return text
    }

    /// One event of about `targetBytes` bytes (never under 60).
    mutating func event(number: Int, targetBytes: Int) -> ByteBuffer {
        let room = pick(Self.rooms)
        let user = pick(Self.users)
        let id = String(nextRandom() & 0xFFFF_FFFF_FFFF, radix: 16)
        let millis = 1_795_000_000_000 + Int64(number) * 37
        let prefix = #"{"type":"message","room":"\#(room)-\#(nextRandom() % 40)","user":"\#(user)","clientId":"\#(id)","sent":\#(millis),"text":""#
        // Real messages vary: most short, some long.
        let text = words(bytes: max(8, targetBytes - prefix.utf8.count - 2 + Int(nextRandom() % 61) - 30))
        return ByteBuffer(string: prefix + text + #""}"#)
    }
}
