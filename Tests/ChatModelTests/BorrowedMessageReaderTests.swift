import NIOCore
import Testing
@testable import ChatModel

@Suite struct BorrowedMessageReaderTests {
    /// The borrowed reader either gives exactly `decode`'s fields, or declines (nil) and
    /// leaves the record to `decode`; it never accepts what `decode` refuses.
    static func expectAgreesWithDecode(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        let record = ByteBuffer(bytes: bytes)
        let decoded = Result { try ChatEventCodec.decode(record) }
        let borrowed = Result {
            try ChatEventCodec.withMessageSent(record) { fields in
                (fields.timestampMs, String(decoding: fields.actor, as: UTF8.self), String(decoding: fields.room, as: UTF8.self),
                 String(decoding: fields.clientMessageID, as: UTF8.self), fields.clientCreatedMs,
                 String(decoding: fields.text, as: UTF8.self), fields.clientCreatedText.map { String(decoding: $0, as: UTF8.self) })
            }
        }
        switch (borrowed, decoded) {
        case (.success(nil), _):
            // Declined: only for other events, or identifiers that need decode's full check.
            if case .success(.event(let event)) = decoded, case .messageSent = event.body {
                #expect(!event.actor.value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
                        || !event.room.value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, sourceLocation: sourceLocation)
            }
        case (.success(let fields?), .success(.event(let event))):
            guard case .messageSent(let clientMessageID, let text, let clientCreatedMs, let clientCreatedText, _) = event.body else {
                Issue.record("borrowed a \(event.body)", sourceLocation: sourceLocation)
                return
            }
            #expect(fields.0 == event.timestampMs && fields.1 == event.actor.value && fields.2 == event.room.value
                    && fields.3 == clientMessageID && fields.4 == clientCreatedMs && fields.5 == text
                    && fields.6 == clientCreatedText, sourceLocation: sourceLocation)
        case (.failure, .failure):
            break
        default:
            Issue.record("borrowed \(borrowed) but decoded \(decoded)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: ChatEventCodecTests.samples)
    func agreesWithDecodeOnEveryEvent(_ event: ChatEvent) {
        Self.expectAgreesWithDecode(Array(ChatEventCodec.encode(event).readableBytesView))
    }

    @Test func agreesWithDecodeOnEveryTruncationAndEveryByteChange() {
        let event = ChatEvent(timestampMs: 7, actor: bob, room: general,
                              body: .messageSent(clientMessageID: "c-ü", text: "héllo 👋", clientCreatedMs: 3))
        let bytes = Array(ChatEventCodec.encode(event).readableBytesView)
        for length in 0...bytes.count { Self.expectAgreesWithDecode(Array(bytes[..<length])) }
        // Every byte set to values that matter: control, ASCII, continuation, lead, invalid.
        for index in bytes.indices {
            for value: UInt8 in [0x00, 0x07, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC3, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF] {
                var changed = bytes
                changed[index] = value
                Self.expectAgreesWithDecode(changed)
            }
        }
    }

    @Test func declinesIdentifiersThatNeedTheFullCheck() throws {
        let event = ChatEvent(timestampMs: 7, actor: user("zoë"), room: general,
                              body: .messageSent(clientMessageID: "c", text: "t", clientCreatedMs: 3))
        let declined = try ChatEventCodec.withMessageSent(ChatEventCodec.encode(event)) { _ in true }
        #expect(declined == nil)
        #expect(try ChatEventCodec.decode(ChatEventCodec.encode(event)) == .event(event))
    }
}
