import Testing

@testable import ChatModel

@Suite struct MentionsTests {
    func names(_ text: String) -> [String] { Mentions.names(in: text).map(\.value) }

    @Test func namesAtTheStartOrAfterWhiteSpaceEachOnceInOrder() {
        #expect(names("@bob hi @alice, and @bob again") == ["bob", "alice"])
        #expect(names("hi\n@carol!\t@dave") == ["carol", "dave"])
    }

    @Test func sentencePunctuationAfterANameIsNotPartOfIt() {
        // A name after a quote or a bracket is not at a word's start: not a mention.
        #expect(names("thanks @bob. (and @eve) \"@zoë\"? @zoë!") == ["bob", "eve", "zoë"])
        #expect(names("ask @x.y.") == ["x.y"])
    }

    @Test func noAtSignNoMentionsAndAnAtInsideAWordIsNone() {
        #expect(names("").isEmpty)
        #expect(names("plain text, no names at all, ünïcödé").isEmpty)
        #expect(names("mail bob@example.com").isEmpty)
        #expect(names("@ alone").isEmpty)
    }

    @Test func atMostPerMessageMaxDistinctUsers() {
        let text = (0..<(Mentions.perMessageMax + 5)).map { "@user\($0)" }.joined(separator: " ")
        let found = names(text)
        #expect(found.count == Mentions.perMessageMax)
        #expect(found.first == "user0" && found.last == "user\(Mentions.perMessageMax - 1)")
    }

    @Test func mayMentionSaysWhetherTheBytesHoldAnAt() {
        for (text, expected) in [("", false), ("no", false), ("a@b", true), (String(repeating: "x", count: 100) + "@", true)] {
            let bytes = Array(text.utf8)
            #expect(bytes.withUnsafeBufferPointer(Mentions.mayMention) == expected)
        }
    }
}
