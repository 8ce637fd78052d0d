import NIOCore
import Testing

@testable import ChatModel

/// Replies, reactions, read markers and direct rooms: their events' encoding and the rules.
@Suite struct ChatFeatureEventsCodecTests {
    static let samples: [ChatEvent] = [
        ChatEvent(timestampMs: 1, actor: alice, room: room("dm:alice:bob"), body: .directRoomCreated(peer: bob)),
        ChatEvent(timestampMs: 2, actor: bob, room: general, body: .reactionAdded(message: MessageID(7), emoji: "👨‍👩‍👧")),
        ChatEvent(timestampMs: 3, actor: bob, room: general, body: .reactionRemoved(message: MessageID(7), emoji: "+1")),
        ChatEvent(timestampMs: 4, actor: carol, room: general, body: .readMarked(message: MessageID(UInt64.max))),
        ChatEvent(timestampMs: 5, actor: bob, room: general,
                  body: .messageSent(clientMessageID: "r", text: "yes", clientCreatedMs: 9, replyTo: MessageID(7))),
        ChatEvent(timestampMs: 6, actor: bob, room: general,
                  body: .messageSent(clientMessageID: "r", text: "yes", clientCreatedMs: 9, clientCreatedText: "2021-07-14T05:55:56Z",
                                     replyTo: MessageID(0))),
    ]

    @Test(arguments: samples)
    func roundTrips(_ event: ChatEvent) throws {
        #expect(try ChatEventCodec.decode(ChatEventCodec.encode(event)) == .event(event))
        // Cut anywhere, a record is an error, except where an optional trailing field of a
        // message begins (the journal's CRC is what catches a cut record).
        let bytes = Array(ChatEventCodec.encode(event).readableBytesView)
        for length in 0..<bytes.count {
            let cut = Result { try ChatEventCodec.decode(ByteBuffer(bytes: bytes[..<length])) }
            if case .success(.event(let decoded)) = cut {
                guard case .messageSent(let id, let text, let ms, _, _) = event.body,
                      case .messageSent(id, text, ms, _, nil) = decoded.body else {
                    Issue.record("\(event) cut to \(length) bytes decoded as \(decoded)")
                    continue
                }
            }
        }
    }

    /// A reply without a client time text writes that field empty: an empty text is none (no
    /// build wrote an empty one: the rules refuse it), and the borrowed reader agrees.
    @Test func aReplyWithoutClientTimeTextLeavesItAbsent() throws {
        let reply = Self.samples[4]
        let bytes = ChatEventCodec.encode(reply)
        let plain = ChatEventCodec.encode(ChatEvent(timestampMs: 5, actor: bob, room: general,
                                                    body: .messageSent(clientMessageID: "r", text: "yes", clientCreatedMs: 9)))
        #expect(bytes.readableBytes == plain.readableBytes + 2 + 8)
        let fields = try ChatEventCodec.withMessageSent(bytes) { ($0.clientCreatedText == nil, $0.replyTo) }
        #expect(fields?.0 == true && fields?.1 == 7)
        let withText = try ChatEventCodec.withMessageSent(ChatEventCodec.encode(Self.samples[5])) {
            (String(decoding: $0.clientCreatedText ?? UnsafeBufferPointer(start: nil, count: 0), as: UTF8.self), $0.replyTo)
        }
        #expect(withText?.0 == "2021-07-14T05:55:56Z" && withText?.1 == 0)
    }
}

@Suite struct ChatFeatureRulesTests {
    /// `general` (public, alice's) with bob a member and two messages by alice; carol knows
    /// nothing of it but is a member of `lobby`.
    func world() -> (Harness, first: MessageID, second: MessageID) {
        var harness = Harness()
        harness.must(.createRoom(general, name: "General", isPrivate: false), by: alice)
        harness.must(.join(general), by: bob)
        let first = MessageID(harness.must(.send(general, clientMessageID: "1", text: "one", clientCreatedMs: 0), by: alice))
        let second = MessageID(harness.must(.send(general, clientMessageID: "2", text: "two", clientCreatedMs: 0), by: alice))
        harness.must(.createRoom(room("lobby"), name: "Lobby", isPrivate: false), by: carol)
        return (harness, first, second)
    }

    @Test func repliesNameALiveMessageOfTheirRoomsWindow() {
        var (harness, first, second) = world()
        #expect(harness.code(of: harness.run(.send(general, clientMessageID: "r", text: "re", clientCreatedMs: 0, replyTo: first), by: bob)) == nil)
        harness.must(.delete(general, message: second), by: alice)
        #expect(harness.code(of: harness.run(.send(general, clientMessageID: "x", text: "re", clientCreatedMs: 0, replyTo: second), by: bob)) == .messageDeleted)
        #expect(harness.code(of: harness.run(.send(general, clientMessageID: "y", text: "re", clientCreatedMs: 0, replyTo: MessageID(0)), by: bob)) == .messageNotFound)
        // A retry of a reply is its duplicate, whatever became of the message it answered.
        #expect(harness.run(.send(general, clientMessageID: "r", text: "re", clientCreatedMs: 0, replyTo: first), by: bob) == .duplicate(of: MessageID(5)))
    }

    @Test func reactionsAreOnePerUserAndEmojiBoundedAndGoWithTheWindow() {
        var (harness, first, second) = world()
        harness.must(.react(general, message: first, emoji: "👍"), by: bob)
        #expect(harness.run(.react(general, message: first, emoji: "👍"), by: bob) == .accepted([]), "again: nothing")
        harness.must(.react(general, message: first, emoji: "👍"), by: carol)  // a public room: any reader
        #expect(harness.state.room(general)?.reactions[first] == [RoomState.Reaction(emoji: "👍", users: [bob, carol])])
        #expect(harness.run(.unreact(general, message: first, emoji: "🎉"), by: bob) == .accepted([]), "not given: nothing")
        harness.must(.unreact(general, message: first, emoji: "👍"), by: bob)
        harness.must(.unreact(general, message: first, emoji: "👍"), by: carol)
        #expect(harness.state.room(general)?.reactions[first] == nil)
        for emoji in ["", "a b", "x\n", String(repeating: "x", count: 33)] {
            #expect(harness.code(of: harness.run(.react(general, message: first, emoji: emoji), by: bob)) == .invalidEmoji)
        }
        #expect(harness.code(of: harness.run(.react(general, message: MessageID(99), emoji: "👍"), by: bob)) == .messageNotFound)
        harness.state = {
            var state = harness.state
            var limits = state.limits
            limits.reactionsPerMessageMax = 2
            state = RoomState(limits: limits, users: state.users, rooms: state.rooms)
            return state
        }()
        harness.must(.react(general, message: second, emoji: "a"), by: bob)
        harness.must(.react(general, message: second, emoji: "b"), by: bob)
        #expect(harness.code(of: harness.run(.react(general, message: second, emoji: "c"), by: bob)) == .tooManyReactions)
        harness.must(.react(general, message: second, emoji: "a"), by: alice)
        // The harness's window is 4 messages: the reactions of a message that leaves it go.
        for n in 0..<4 { harness.must(.send(general, clientMessageID: "w\(n)", text: "w", clientCreatedMs: 0), by: alice) }
        #expect(harness.state.room(general)?.reactions[second] == nil)
        #expect(harness.code(of: harness.run(.react(general, message: second, emoji: "a"), by: bob)) == .messageNotFound)
    }

    @Test func aPrivateRoomsMessagesTakeReactionsAndMarkersFromMembersOnly() {
        var harness = Harness()
        harness.must(.createRoom(secret, name: "S", isPrivate: true), by: alice)
        let message = MessageID(harness.must(.send(secret, clientMessageID: "1", text: "x", clientCreatedMs: 0), by: alice))
        #expect(harness.code(of: harness.run(.react(secret, message: message, emoji: "👍"), by: carol)) == .notMember)
        #expect(harness.code(of: harness.run(.markRead(secret, message: message), by: carol)) == .notMember)
        #expect(harness.code(of: harness.run(.send(secret, clientMessageID: "r", text: "x", clientCreatedMs: 0, replyTo: message), by: carol)) == .notMember)
    }

    @Test func readMarkersOnlyMoveForwardAndStartAtTheJoin() {
        var (harness, first, second) = world()
        // bob joined before the messages: no marker.
        #expect(harness.state.room(general)?.readMarkers[bob] == nil)
        harness.must(.markRead(general, message: second), by: bob)
        #expect(harness.run(.markRead(general, message: first), by: bob) == .accepted([]))
        #expect(harness.state.room(general)?.readMarkers[bob] == second)
        #expect(harness.code(of: harness.run(.markRead(general, message: MessageID(second.offset + 1)), by: bob)) == .messageNotFound)
        #expect(harness.code(of: harness.run(.markRead(general, message: first), by: carol)) == .notMember)
        // Joining a room with messages reads them; leaving forgets the marker.
        guard case .accepted(let events) = harness.run(.join(general), by: carol) else { Issue.record("carol joins"); return }
        #expect(events.map(\.body) == [.memberJoined, .readMarked(message: second)])
        #expect(harness.state.room(general)?.readMarkers[carol] == second)
        harness.must(.leave(general), by: carol)
        #expect(harness.state.room(general)?.readMarkers[carol] == nil)
        // A marker replayed for a non-member (a journal of other rules) changes nothing.
        harness.state.apply(ChatEvent(timestampMs: 1, actor: carol, room: general, body: .readMarked(message: second)), at: 100)
        #expect(harness.state.room(general)?.readMarkers[carol] == nil)
    }

    @Test func aDirectRoomIsOneRoomPerPairOfExactlyThoseTwo() {
        var (harness, _, _) = world()
        guard case .accepted(let events) = harness.run(.openDirect(peer: carol), by: bob), let opened = events.first else {
            Issue.record("bob opens a direct room with carol")
            return
        }
        let dm = room("dm:bob:carol")
        #expect(events == [ChatEvent(timestampMs: harness.now, actor: bob, room: dm, body: .directRoomCreated(peer: carol))])
        #expect(opened.createsRoom)
        #expect(harness.state.directRoom(of: carol, and: bob) == dm)
        #expect(harness.state.room(dm)?.members == [bob, carol] && harness.state.room(dm)?.isPrivate == true)
        #expect(harness.run(.openDirect(peer: bob), by: carol) == .accepted([]), "the same room, already a member")
        #expect(harness.code(of: harness.run(.invite(dm, user: alice), by: bob)) == .directRoom)
        #expect(harness.code(of: harness.run(.remove(dm, user: carol), by: bob)) == .directRoom)
        #expect(harness.code(of: harness.run(.revokeInvitation(dm, user: carol), by: bob)) == .directRoom)
        #expect(harness.code(of: harness.run(.join(dm), by: alice)) == .directRoom)
        harness.must(.leave(dm), by: carol)
        #expect(harness.code(of: harness.run(.join(dm), by: alice)) == .directRoom)
        #expect(harness.code(of: harness.run(.join(dm), by: carol)) == nil, "either of the two may come back")
        #expect(harness.code(of: harness.run(.openDirect(peer: user("ghost")), by: bob)) == .userNotFound)
        #expect(harness.code(of: harness.run(.openDirect(peer: bob), by: bob)) == .directRoom)
    }

    @Test func aDirectRoomsReadableIdThatIsTakenGivesANumberedOne() {
        var (harness, _, _) = world()
        harness.must(.createRoom(room("dm:alice:bob"), name: "squatter", isPrivate: false), by: carol)
        harness.must(.openDirect(peer: alice), by: bob)
        let dm = harness.state.directRoom(of: alice, and: bob)
        #expect(dm == room("dm:\(harness.state.roomCount - 1)"))
        #expect(harness.state.room(room("dm:alice:bob"))?.isDirect == false)
        // Too long for a readable id: numbered too.
        let long = user(String(repeating: "x", count: 64))
        harness.must(.join(room("lobby")), by: long)
        harness.must(.openDirect(peer: long), by: user(String(repeating: "y", count: 64)))
        #expect(harness.state.directRoom(of: long, and: user(String(repeating: "y", count: 64)))?.value.hasPrefix("dm:") == true)
    }
}
