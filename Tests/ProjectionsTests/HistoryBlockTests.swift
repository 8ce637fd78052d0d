import ChatModel
import Foundation
import GRDB
import Journal
import Logging
import NIOCore
import Testing
@testable import Projections

@Suite struct HistoryBlockTests {
    static func message(_ offset: UInt64, text: String? = "hello wörld 👋") -> HistoryBlock.Message {
        HistoryBlock.Message(offset: offset, author: "user-\(offset % 7)", clientMessageID: "c-\(offset)", text: text,
                             clientCreatedMs: Int64(offset) * 10, sentMs: Int64(offset) * 10 + 3,
                             editedMs: offset % 5 == 0 ? 99 : nil, deletedMs: nil,
                             clientCreatedText: offset % 3 == 1 ? "1970-01-01T00:00:00.0\(offset % 10)0Z" : nil)
    }

    @Test func encodedMessagesRoundTripAndMatchTheFormat() {
        let messages: [HistoryBlock.Message] = (0..<10).map { (index: Int) in
            let text: String? = index == 4 ? nil : "text \(index) ✓"
            return Self.message(UInt64(index * 3 + 1), text: text)
        }
        let block = HistoryBlock(messages: messages)
        #expect(block.count == 10 && block.firstOffset == 1 && block.lastOffset == 28)
        #expect(block.messages == messages)
        let decoded = HistoryBlock.decode(block.encoded())
        #expect(decoded == block && decoded?.messages == messages)
        // FORMAT.md §10, first message field by field.
        let bytes = Array(HistoryBlock(messages: [Self.message(5, text: "hi")]).encoded())
        var expected: [UInt8] = [1, 0]
        expected += [5, 0, 0, 0, 0, 0, 0, 0]  // offset
        expected += [53, 0, 0, 0, 0, 0, 0, 0]  // sent
        expected += [50, 0, 0, 0, 0, 0, 0, 0]  // client created
        expected += [99, 0, 0, 0, 0, 0, 0, 0]  // edited
        expected += [0, 0, 0, 0, 0, 0, 0, 0x80]  // not deleted
        expected += [6, 0] + Array("user-5".utf8)
        expected += [3, 0] + Array("c-5".utf8)
        expected += [2, 0, 0, 0] + Array("hi".utf8)
        expected += [0xFF, 0xFF]  // no client time text: the client sent a number
        #expect(bytes == expected)
        let withText = Array(HistoryBlock(messages: [Self.message(4, text: "hi")]).encoded())
        #expect(Array(withText.suffix(2 + 24)) == [24, 0] + Array("1970-01-01T00:00:00.040Z".utf8))
    }

    @Test func appendingFromBytesEqualsAppendingAMessage() {
        var fromBytes = HistoryBlock()
        for offset in [UInt64(3), 9, 10] {
            let message = Self.message(offset)
            message.withFieldBytes { author, clientMessageID, text, createdText in
                fromBytes.append(offset: offset, sentMs: message.sentMs, clientCreatedMs: message.clientCreatedMs,
                                 editedMs: message.editedMs, author: author, clientMessageID: clientMessageID, text: text,
                                 clientCreatedText: createdText)
            }
        }
        #expect(fromBytes == HistoryBlock(messages: [3, 9, 10].map { Self.message($0) }))
    }

    @Test func updateChangesOneMessageInPlace() {
        let messages = (1...6).map { Self.message(UInt64($0 * 2)) }
        var block = HistoryBlock(messages: messages)
        #expect(block.update(offset: 6) { $0.text = "a much longer text than before, to move the messages after it"; $0.editedMs = 7 })
        #expect(block.update(offset: 12) { $0.text = nil; $0.deletedMs = 8 })
        #expect(!block.update(offset: 7) { $0.text = "absent" })
        #expect(!block.update(offset: 13) { $0.text = "past the end" })
        var expected = messages
        expected[2].text = "a much longer text than before, to move the messages after it"
        expected[2].editedMs = 7
        expected[5].text = nil
        expected[5].deletedMs = 8
        #expect(block.messages == expected)
        #expect(HistoryBlock.decode(block.encoded()) == block)
    }

    @Test func damagedBlocksAreRefused() {
        let good = Array(HistoryBlock(messages: [Self.message(1), Self.message(2)]).encoded())
        #expect(HistoryBlock.decode(Data(good)) != nil)
        // Every truncation, and anything after the last message.
        for length in 0..<good.count { #expect(HistoryBlock.decode(Data(good[..<length])) == nil) }
        #expect(HistoryBlock.decode(Data(good + [0])) == nil)
        // A count over the capacity; offsets that do not increase.
        var overfull = good
        overfull[0] = UInt8(HistoryBlock.capacity + 1)
        #expect(HistoryBlock.decode(Data(overfull)) == nil)
        let repeated = Array(HistoryBlock(messages: [Self.message(1)]).encoded())
        var twice = repeated
        twice[0] = 2
        twice += repeated.dropFirst(2)
        #expect(HistoryBlock.decode(Data(twice)) == nil)
        #expect(HistoryBlock.decode(nil) == nil)
    }
}
