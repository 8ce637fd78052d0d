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
    ]

    @Test(arguments: samples)
    func roundTrips(_ event: ChatEvent) throws {
        let bytes = ChatEventCodec.encode(event)
        #expect(try ChatEventCodec.decode(bytes) == .event(event))
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
        if case .messageSent(let id, let text, let ms, let createdText?) = event.body {
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
        guard case .messageSent(_, _, _, let createdText) = withText.body else { Issue.record("sample 10 is a message"); return }
        #expect(createdText == "2021-07-14T05:55:56.868Z")
        // A record of the first revision (no trailing field) is a message without it.
        #expect(try ChatEventCodec.decode(ChatEventCodec.encode(Self.samples[7])) == .event(Self.samples[7]))
        // Bytes after the known trailing field are a later revision's: ignored.
        var longer = ChatEventCodec.encode(withText)
        longer.writeBytes([9, 9, 9])
        #expect(try ChatEventCodec.decode(longer) == .event(withText))
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
            guard case .messageSent(let clientMessageID, let text, let clientCreatedMs, let clientCreatedText) = event.body else {
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

@Suite struct UTF8ValidationTests {
    /// The word-at-a-time check against the byte-by-byte rule: every byte value, at every
    /// position of names up to three words long.
    @Test func printableASCIIIsCheckedAtEveryPositionForEveryByte() {
        var wrong: [String] = []
        for length in 1...24 {
            for position in 0..<length {
                for byte in UInt8.min...UInt8.max {
                    var bytes = [UInt8](repeating: UInt8(ascii: "k"), count: length)
                    bytes[position] = byte
                    let expected = byte >= 0x20 && byte < 0x7F
                    if bytes.withUnsafeBufferPointer({ UTF8Validation.isPrintableASCII($0) }) != expected {
                        wrong.append("byte \(byte) at \(position) of \(length)")
                    }
                }
            }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
        #expect([UInt8]().withUnsafeBufferPointer { UTF8Validation.isPrintableASCII($0) })
    }

    static func agrees(_ bytes: [UInt8]) -> Bool {
        let expected = String(validating: bytes, as: UTF8.self) != nil
        return bytes.withUnsafeBufferPointer { UTF8Validation.isValid($0) } == expected
    }

    @Test func edgeCasesOfTable3_7() {
        let cases: [[UInt8]] = [
            [], Array("plain ascii, longer than one word".utf8), Array("é€😀".utf8),
            [0xC0, 0x80], [0xC1, 0xBF], [0xC2, 0x80], [0xDF, 0xBF],                 // overlong 2-byte, smallest and largest valid
            [0xE0, 0x9F, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80],  // overlong 3-byte, surrogates
            [0xEF, 0xBF, 0xBF], [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80],
            [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80],    // above U+10FFFF
            [0x80], [0xBF], [0xC3], [0xE2, 0x82], [0xF0, 0x9F, 0x98], [0xFF], [0xFE],        // lone, truncated, never valid
            Array("abcdefgh".utf8) + [0xC3] + Array("abcdefgh".utf8), [0xC3, 0x41], [0xE2, 0x82, 0x41],
        ]
        for bytes in cases { #expect(Self.agrees(bytes), "\(bytes)") }
    }

    @Test func agreesWithTheStandardLibraryOnRandomBytes() {
        var generator = SystemRandomNumberGenerator()
        // Mostly ASCII and UTF-8-ish bytes, so that both valid and invalid input are common.
        let alphabet: [UInt8] = Array(0x20...0x7E) + [0x00, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF,
                                                       0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF]
        var valid = 0
        for _ in 0..<50_000 {
            let count = Int.random(in: 0..<24, using: &generator)
            let bytes = (0..<count).map { _ in
                Bool.random(using: &generator) ? UInt8.random(in: 0x80...0xF4, using: &generator)
                    : alphabet.randomElement(using: &generator) ?? 0
            }
            if String(validating: bytes, as: UTF8.self) != nil { valid += 1 }
            #expect(Self.agrees(bytes), "\(bytes)")
        }
        #expect(valid > 1_000, "the generator produced too few valid strings to test acceptance")
    }
}

@Suite struct UserRefMapTests {
    @Test func behavesAsADictionaryThroughGrowthAndCollisions() {
        var map = UserRefMap<Int>()
        var reference: [RoomState.UserRef: Int] = [:]
        var generator = SystemRandomNumberGenerator()
        // Keys spread widely and keys in a dense run (the real case), with repeats.
        let keys = (0..<3_000).map { _ in UInt32.random(in: 0..<100_000, using: &generator) } + Array(0..<2_000)
        for (step, key) in keys.enumerated() {
            let ref = RoomState.UserRef(key)
            if step % 3 == 0 {
                map.updateValue(step, forKey: ref)
                reference[ref] = step
            } else {
                let added = map.modify(ref, default: { -1 }) { value -> Int in
                    value += 1
                    return value
                }
                reference[ref, default: -1] += 1
                #expect(added == reference[ref])
            }
        }
        #expect(map.count == reference.count)
        for (key, value) in reference { #expect(map[key] == value) }
        #expect(map[RoomState.UserRef(200_000)] == nil)
        #expect(Dictionary(uniqueKeysWithValues: map.map { ($0.key, $0.value) }) == reference)
    }

    @Test func equalityIgnoresInsertionOrder() {
        var forward = UserRefMap<String>()
        var backward = UserRefMap<String>()
        for key in 0..<20 { forward.updateValue("v\(key)", forKey: RoomState.UserRef(UInt32(key))) }
        for key in (0..<20).reversed() { backward.updateValue("v\(key)", forKey: RoomState.UserRef(UInt32(key))) }
        #expect(forward == backward)
        backward.updateValue("changed", forKey: RoomState.UserRef(3))
        #expect(forward != backward)
        #expect(UserRefMap<String>() == UserRefMap<String>())
    }
}

@Suite struct IdentifierCacheTests {
    @Test func findsEveryNameItHoldsByItsExactBytes() {
        var cache = IdentifierCache()
        var generator = SystemRandomNumberGenerator()
        // Lengths around the eight-byte steps of the hash, and names sharing long prefixes.
        var names: Set<[UInt8]> = []
        while names.count < 5_000 {
            let length = Int.random(in: 1...64, using: &generator)
            let prefix = Array("room-shared-prefix-".utf8).prefix(Int.random(in: 0...19, using: &generator))
            names.insert(Array(prefix) + (0..<length).map { _ in UInt8.random(in: 0x21...0x7E, using: &generator) })
        }
        let ordered = Array(names)
        for (value, name) in ordered.enumerated() {
            name.withUnsafeBufferPointer { bytes in
                #expect(cache.value(for: bytes) == nil)
                cache.insert(bytes, value: UInt32(value))
            }
        }
        for (value, name) in ordered.enumerated() {
            name.withUnsafeBufferPointer { #expect(cache.value(for: $0) == UInt32(value)) }
        }
        for absent in [Array("never-inserted".utf8), Array(ordered[0].dropLast()) + [0x20]] where !names.contains(absent) {
            absent.withUnsafeBufferPointer { #expect(cache.value(for: $0) == nil) }
        }
    }

    /// Names held in their slot (up to sixteen bytes) and in the arena (longer): names that are
    /// prefixes of one another, or differ only in their last byte, on either side of the line.
    @Test func tellsApartNamesThatDifferOnlyAtTheEdges() {
        var cache = IdentifierCache()
        let base = Array("abcdefghijklmnopqrstuvwxyz".utf8)
        var names: [[UInt8]] = []
        for length in [1, 7, 8, 9, 15, 16, 17, 23, 24, 25] {
            names.append(Array(base.prefix(length)))
            names.append(Array(base.prefix(length - 1)) + [UInt8(ascii: "!")])
        }
        for (value, name) in names.enumerated() {
            name.withUnsafeBufferPointer { cache.insert($0, value: UInt32(value)) }
        }
        for (value, name) in names.enumerated() {
            name.withUnsafeBufferPointer { #expect(cache.value(for: $0) == UInt32(value), "\(name.count) bytes") }
        }
        for length in [2, 10, 18, 26] {
            Array(base.prefix(length)).withUnsafeBufferPointer { #expect(cache.value(for: $0) == nil) }
        }
    }
}
