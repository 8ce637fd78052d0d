import NIOCore
import Testing

@testable import ChatModel

@Suite struct ChatEventCodecTests {
    static let samples: [ChatEvent] = [
        ChatEvent(timestampMs: 1_795_000_000_000, actor: alice, room: general, body: .roomCreated(name: "General ☕", isPrivate: false)),
        ChatEvent(timestampMs: 2, actor: alice, room: secret, body: .roomCreated(name: "Secret", isPrivate: true)),
        ChatEvent(timestampMs: 3, actor: alice, room: secret, body: .memberInvited(user: bob)),
        ChatEvent(timestampMs: 4, actor: alice, room: secret, body: .invitationRevoked(user: bob)),
        ChatEvent(timestampMs: 5, actor: bob, room: general, body: .memberJoined),
        ChatEvent(timestampMs: 6, actor: bob, room: general, body: .memberLeft),
        ChatEvent(timestampMs: 7, actor: alice, room: secret, body: .memberRemoved(user: carol)),
        ChatEvent(timestampMs: -8, actor: bob, room: general, body: .messageSent(clientMessageID: "c-1", text: "héllo\nwörld 👋", clientCreatedMs: 1_794_999_999_000)),
        ChatEvent(timestampMs: 9, actor: bob, room: general, body: .messageEdited(message: MessageID(42), text: "edited")),
        ChatEvent(timestampMs: 10, actor: alice, room: general, body: .messageDeleted(message: MessageID(UInt64.max))),
        ChatEvent(timestampMs: 11, actor: bob, room: general,
                  body: .messageSent(clientMessageID: "c-2", text: "at noon", clientCreatedMs: 1_626_242_156_868,
                                     clientCreatedText: "2021-07-14T05:55:56.868Z")),
        ChatEvent(timestampMs: 12, actor: carol, room: .none, body: .tokensRevoked(beforeMs: 1_795_000_001_000)),
    ]

    /// A revocation is about no room: its room field must be empty (a room there is damage,
    /// not a room id to trust).
    @Test func aRevocationWithARoomIsRefused() throws {
        var bytes = ChatEventCodec.encode(ChatEvent(timestampMs: 1, actor: carol, room: general, body: .memberJoined))
        bytes.setInteger(UInt8(10), at: 1)  // the type byte: tokensRevoked
        bytes.writeInteger(Int64(5), endianness: .little)
        #expect(throws: ChatEventDecodingError.self) { try ChatEventCodec.decode(bytes) }
    }

    @Test(arguments: samples)
    func roundTrips(_ event: ChatEvent) throws {
        let bytes = ChatEventCodec.encode(event)
        #expect(try ChatEventCodec.decode(bytes) == .event(event))
    }

    /// A record is measured, then written in one piece after what the buffer holds: the
    /// measure is what is written, and a record appended reads back the same.
    @Test(arguments: samples + ChatFeatureEventsCodecTests.samples)
    func aRecordIsAppendedAtItsMeasuredSize(_ event: ChatEvent) throws {
        var buffer = ByteBuffer(bytes: [0xAA, 0xBB, 0xCC])
        ChatEventCodec.encode(event, into: &buffer)
        #expect(buffer.readableBytes == 3 + ChatEventCodec.encodedBytes(event))
        #expect(buffer.readBytes(length: 3) == [0xAA, 0xBB, 0xCC])
        #expect(try ChatEventCodec.decode(buffer) == .event(event))
        #expect(ChatEventCodec.encode(event).readableBytes == ChatEventCodec.encodedBytes(event))
    }

    @Test func messageSentMatchesTheFormatExample() throws {
        let event = ChatEvent(timestampMs: 1_795_000_000_000, actor: bob, room: general,
                              body: .messageSent(clientMessageID: "c1", text: "hi", clientCreatedMs: 1_794_999_999_500))
        let hex = ChatEventCodec.encode(event).readableBytesView.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
        #expect(hex == "01 07 00 5e 56 ee a1 01 00 00 03 00 62 6f 62 07 00 67 65 6e 65 72 61 6c 02 00 63 31 0c 5c 56 ee a1 01 00 00 02 00 00 00 68 69")
    }

    @Test func unknownVersionsAndTypesAreSkippedNotFatal() throws {
        #expect(try ChatEventCodec.decode(ByteBuffer(bytes: [2, 7, 0, 0])) == .unknown(version: 2, type: 7))
        #expect(try ChatEventCodec.decode(ByteBuffer(bytes: [1, 200, 1, 2, 3])) == .unknown(version: 1, type: 200))
    }

    @Test func trailingFieldsOfALaterRevisionAreIgnored() throws {
        var bytes = ChatEventCodec.encode(Self.samples[4])
        bytes.writeBytes([9, 9, 9])
        #expect(try ChatEventCodec.decode(bytes) == .event(Self.samples[4]))
    }

    @Test(arguments: samples)
    func everyTruncationIsAnErrorNeverACrash(_ event: ChatEvent) throws {
        let bytes = Array(ChatEventCodec.encode(event).readableBytesView)
        // A message's client time text is an optional trailing field: cut just before it, the
        // record is the same message without it (the journal's CRC is what catches truncation).
        var withoutText: Int?
        if case .messageSent(let id, let text, let ms, let createdText?, nil) = event.body {
            withoutText = bytes.count - 2 - createdText.utf8.count
            var plain = event
            plain.body = .messageSent(clientMessageID: id, text: text, clientCreatedMs: ms)
            #expect(try ChatEventCodec.decode(ByteBuffer(bytes: bytes[..<(withoutText ?? 0)])) == .event(plain))
        }
        for length in 0..<bytes.count where length != withoutText {
            #expect(throws: ChatEventDecodingError.self) { try ChatEventCodec.decode(ByteBuffer(bytes: bytes[..<length])) }
        }
    }

    @Test func aMessageKeepsItsClientTimeTextAndReadsOldRecordsWithoutIt() throws {
        let withText = Self.samples[10]
        guard case .messageSent(_, _, _, let createdText, _) = withText.body else { Issue.record("sample 10 is a message"); return }
        #expect(createdText == "2021-07-14T05:55:56.868Z")
        // A record of the first revision (no trailing field) is a message without it.
        #expect(try ChatEventCodec.decode(ChatEventCodec.encode(Self.samples[7])) == .event(Self.samples[7]))
        // The next trailing field is the message replied to; bytes after it are a later
        // revision's: ignored.
        var longer = ChatEventCodec.encode(withText)
        longer.writeInteger(UInt64(3), endianness: .little)
        longer.writeBytes([9, 9, 9])
        var reply = withText
        if case .messageSent(let id, let text, let ms, let createdText, _) = withText.body {
            reply.body = .messageSent(clientMessageID: id, text: text, clientCreatedMs: ms, clientCreatedText: createdText, replyTo: MessageID(3))
        }
        #expect(try ChatEventCodec.decode(longer) == .event(reply))
        // The trailing field is checked like any string: an over-long length is an error.
        var bad = ChatEventCodec.encode(Self.samples[7])
        bad.writeInteger(UInt16(ChatEventCodec.shortStringBytesLimit + 1), endianness: .little)
        #expect(throws: ChatEventDecodingError.self) { try ChatEventCodec.decode(bad) }
    }

    @Test func invalidUTF8AndInvalidIdentifiersAreErrors() {
        var event = ChatEventCodec.encode(Self.samples[7])
        // Corrupt the first byte of the actor ("bob") into a lone continuation byte.
        event.setInteger(UInt8(0x80), at: event.readerIndex + 12)
        #expect(throws: ChatEventDecodingError.self) { try ChatEventCodec.decode(event) }
        var control = ChatEventCodec.encode(Self.samples[7])
        control.setInteger(UInt8(0x07), at: control.readerIndex + 12)
        #expect(throws: ChatEventDecodingError.self) { try ChatEventCodec.decode(control) }
    }

    @Test func oversizeLengthsAreRefusedBeforeReading() {
        var bytes = ByteBuffer(bytes: [1, 5, 0, 0, 0, 0, 0, 0, 0, 0])
        bytes.writeInteger(UInt16(ChatEventCodec.shortStringBytesLimit + 1), endianness: .little)
        #expect(throws: ChatEventDecodingError.self) { try ChatEventCodec.decode(bytes) }
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let count = Int.random(in: 0..<64, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count > 1 { bytes[0] = 1; bytes[1] = UInt8.random(in: 1...9, using: &generator) }
            _ = try? ChatEventCodec.decode(ByteBuffer(bytes: bytes))
        }
    }
}
