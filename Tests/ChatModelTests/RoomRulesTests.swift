import Testing

@testable import ChatModel

@Suite struct TokenRevocationRulesTests {
    @Test func aRevocationCoversTheSecondItIsMadeInAndOnlyRises() {
        var state = RoomState()
        guard case .accepted(let events) = state.decide(.revokeTokens, by: alice, at: 1_795_000_000_400) else {
            Issue.record("a revocation is always accepted")
            return
        }
        #expect(events == [ChatEvent(timestampMs: 1_795_000_000_400, actor: alice, room: .none,
                                     body: .tokensRevoked(beforeMs: 1_795_000_001_000))])
        state.apply(events[0], at: 0)
        #expect(state.tokensRevokedBefore == [alice: 1_795_000_001_000])
        // An older revocation replayed after a newer one (an import) does not lower it.
        state.apply(ChatEvent(timestampMs: 1, actor: alice, room: .none, body: .tokensRevoked(beforeMs: 1000)), at: 1)
        #expect(state.tokensRevokedBefore == [alice: 1_795_000_001_000])
        #expect(state.roomCount == 0, "about no room")
    }
}

@Suite struct RoomRulesTests {
    /// A public room `general` owned by alice, and a private room `secret` owned by alice with
    /// bob invited and carol a stranger.
    func world() -> Harness {
        var harness = Harness()
        harness.must(.createRoom(general, name: "General", isPrivate: false), by: alice)
        harness.must(.createRoom(secret, name: "Secret", isPrivate: true), by: alice)
        harness.must(.invite(secret, user: bob), by: alice)
        return harness
    }

    struct Case: Sendable, CustomStringConvertible {
        let command: ChatCommand
        let actor: UserID
        /// nil means accepted.
        let expected: Rejection.Code?
        var description: String { "\(command) by \(actor) -> \(expected?.rawValue ?? "accepted")" }
    }

    static let table: [Case] = [
        // Creating
        Case(command: .createRoom(general, name: "Again", isPrivate: false), actor: bob, expected: .roomExists),
        Case(command: .createRoom(room("new"), name: "New", isPrivate: true), actor: carol, expected: nil),
        Case(command: .createRoom(room("new"), name: "", isPrivate: false), actor: carol, expected: .invalidName),
        Case(command: .createRoom(room("new"), name: "bad\u{7}name", isPrivate: false), actor: carol, expected: .invalidName),
        Case(command: .join(room("nowhere")), actor: bob, expected: .roomNotFound),
        // Joining
        Case(command: .join(general), actor: carol, expected: nil),
        Case(command: .join(general), actor: alice, expected: .alreadyMember),
        Case(command: .join(secret), actor: bob, expected: nil),
        Case(command: .join(secret), actor: carol, expected: .notInvited),
        // Inviting
        Case(command: .invite(secret, user: carol), actor: alice, expected: nil),
        Case(command: .invite(secret, user: carol), actor: bob, expected: .notOwner),
        Case(command: .invite(secret, user: bob), actor: alice, expected: .alreadyInvited),
        Case(command: .invite(secret, user: alice), actor: alice, expected: .alreadyMember),
        Case(command: .invite(general, user: carol), actor: alice, expected: .notPrivate),
        Case(command: .revokeInvitation(secret, user: bob), actor: alice, expected: nil),
        Case(command: .revokeInvitation(secret, user: bob), actor: bob, expected: .notOwner),
        Case(command: .revokeInvitation(secret, user: carol), actor: alice, expected: .notInvited),
        // Leaving and removing
        Case(command: .leave(general), actor: alice, expected: nil),
        Case(command: .leave(general), actor: carol, expected: .notMember),
        Case(command: .remove(secret, user: alice), actor: alice, expected: .cannotRemoveOwner),
        Case(command: .remove(secret, user: bob), actor: alice, expected: .notMember),
        Case(command: .remove(secret, user: carol), actor: bob, expected: .notOwner),
        // Sending
        Case(command: .send(general, clientMessageID: "c1", text: "hi", clientCreatedMs: 0), actor: carol, expected: nil),
        Case(command: .send(secret, clientMessageID: "c1", text: "hi", clientCreatedMs: 0), actor: alice, expected: nil),
        Case(command: .send(secret, clientMessageID: "c1", text: "hi", clientCreatedMs: 0), actor: bob, expected: .notMember),
        Case(command: .send(secret, clientMessageID: "c1", text: "hi", clientCreatedMs: 0), actor: carol, expected: .notMember),
        Case(command: .send(general, clientMessageID: "c1", text: "", clientCreatedMs: 0), actor: alice, expected: .invalidText),
        Case(command: .send(general, clientMessageID: "c1", text: String(repeating: "x", count: 4097), clientCreatedMs: 0), actor: alice, expected: .invalidText),
        Case(command: .send(general, clientMessageID: "c1", text: "line one\nline two", clientCreatedMs: 0), actor: alice, expected: nil),
        Case(command: .send(general, clientMessageID: "", text: "hi", clientCreatedMs: 0), actor: alice, expected: .invalidClientMessageID),
        Case(command: .send(general, clientMessageID: String(repeating: "i", count: 65), text: "hi", clientCreatedMs: 0), actor: alice, expected: .invalidClientMessageID),
    ]

    @Test(arguments: table)
    func ruleTable(_ row: Case) {
        var harness = world()
        let decision = harness.run(row.command, by: row.actor)
        #expect(harness.code(of: decision) == row.expected, "\(row): got \(decision)")
        if row.expected == nil, case .accepted(let events) = decision {
            #expect(events.count == 1)
            #expect(events.first?.actor == row.actor && events.first?.room == row.command.room)
        }
    }

    @Test func aRemovedUserMustBeInvitedAgain() {
        var harness = world()
        harness.must(.join(secret), by: bob)
        harness.must(.remove(secret, user: bob), by: alice)
        #expect(harness.code(of: harness.run(.join(secret), by: bob)) == .notInvited)
        #expect(harness.code(of: harness.run(.send(secret, clientMessageID: "x", text: "hi", clientCreatedMs: 0), by: bob)) == .notMember)
        harness.must(.invite(secret, user: bob), by: alice)
        harness.must(.join(secret), by: bob)
    }

    @Test func joiningConsumesTheInvitation() {
        var harness = world()
        harness.must(.join(secret), by: bob)
        harness.must(.leave(secret), by: bob)
        #expect(harness.code(of: harness.run(.join(secret), by: bob)) == .notInvited)
    }

    @Test func theOwnerMayLeaveAndComeBackStillOwning() {
        var harness = world()
        harness.must(.leave(secret), by: alice)
        harness.must(.join(secret), by: alice)
        harness.must(.invite(secret, user: carol), by: alice)
    }

    @Test func onlyTheAuthorEditsAndTheAuthorOrOwnerDeletes() {
        var harness = world()
        harness.must(.join(general), by: bob)
        let message = MessageID(harness.must(.send(general, clientMessageID: "m", text: "hello", clientCreatedMs: 0), by: bob))
        #expect(harness.code(of: harness.run(.edit(general, message: message, text: "hacked"), by: carol)) == .notAuthor)
        #expect(harness.code(of: harness.run(.edit(general, message: message, text: "hacked"), by: alice)) == .notAuthor)
        harness.must(.edit(general, message: message, text: "hello!"), by: bob)
        #expect(harness.code(of: harness.run(.delete(general, message: message), by: carol)) == .notAuthor)
        harness.must(.delete(general, message: message), by: alice)  // the owner moderates
        #expect(harness.code(of: harness.run(.delete(general, message: message), by: bob)) == .messageDeleted)
        #expect(harness.code(of: harness.run(.edit(general, message: message, text: "again"), by: bob)) == .messageDeleted)
        #expect(harness.code(of: harness.run(.edit(general, message: MessageID(9999), text: "x"), by: bob)) == .messageNotFound)
    }

    /// A non-member once got `not_author` for an id in a private room and `message_not_found`
    /// for one that is not: a probe of which ids the room holds.
    @Test func aNonMemberLearnsNothingOfAPrivateRoomsMessagesByDeleting() {
        var harness = world()
        let message = MessageID(harness.must(.send(secret, clientMessageID: "m", text: "private", clientCreatedMs: 0), by: alice))
        let there = harness.run(.delete(secret, message: message), by: carol)
        let absent = harness.run(.delete(secret, message: MessageID(9999)), by: carol)
        #expect(harness.code(of: there) == .notMember)
        #expect(harness.code(of: absent) == .notMember)
        #expect(harness.code(of: harness.run(.edit(secret, message: message, text: "x"), by: carol)) == .notMember)
        #expect(harness.code(of: harness.run(.edit(secret, message: MessageID(9999), text: "x"), by: carol)) == .notMember)
    }

    @Test func messagesOlderThanTheEditWindowCannotBeEdited() {
        var harness = world()
        let first = MessageID(harness.must(.send(general, clientMessageID: "0", text: "zero", clientCreatedMs: 0), by: alice))
        for n in 1...4 {
            harness.must(.send(general, clientMessageID: "\(n)", text: "m\(n)", clientCreatedMs: 0), by: alice)
        }
        // The window holds 4 messages: the first fell out of it.
        #expect(harness.code(of: harness.run(.edit(general, message: first, text: "late"), by: alice)) == .messageNotFound)
        #expect(harness.state.room(general)?.recentMessages.count == 4)
    }

    @Test func aRepeatedClientMessageIDIsADuplicateWithinTheWindow() {
        var harness = world()
        let original = harness.must(.send(general, clientMessageID: "same", text: "hello", clientCreatedMs: 5), by: alice)
        let stateBefore = harness.state
        #expect(harness.run(.send(general, clientMessageID: "same", text: "hello", clientCreatedMs: 5), by: alice) == .duplicate(of: MessageID(original)))
        #expect(harness.state == stateBefore, "a duplicate changes nothing")
        // The same id from another user, or in another room, is a different message.
        harness.must(.join(general), by: bob)
        harness.must(.send(general, clientMessageID: "same", text: "hello", clientCreatedMs: 5), by: bob)
        harness.must(.send(secret, clientMessageID: "same", text: "hello", clientCreatedMs: 5), by: alice)
        // Once three newer ids have been sent, "same" has left the window of 3: accepted again.
        for n in 0..<3 {
            harness.must(.send(general, clientMessageID: "other-\(n)", text: "x", clientCreatedMs: 0), by: alice)
        }
        harness.must(.send(general, clientMessageID: "same", text: "hello", clientCreatedMs: 5), by: alice)
    }

    @Test func aRoomKeepsTheWindowsOfItsMostRecentSendersOnly() {
        var harness = world()
        harness.state = RoomState(limits: {
            var limits = ChatLimits()
            limits.clientMessageIDWindow = 3
            limits.clientIDSendersPerRoomMax = 3
            return limits
        }())
        harness.must(.createRoom(general, name: "General", isPrivate: false), by: alice)
        let senders = (0..<5).map { user("sender\($0)") }
        var originals: [UserID: UInt64] = [:]
        for sender in senders {
            originals[sender] = harness.must(.send(general, clientMessageID: "c1", text: "hi", clientCreatedMs: 0), by: sender)
        }
        // Five senders, a cap of three: the two whose last message is oldest lost their window.
        #expect(harness.state.room(general)?.recentClientIDs.count == 3)
        for sender in senders.suffix(3) {
            #expect(harness.run(.send(general, clientMessageID: "c1", text: "hi", clientCreatedMs: 0), by: sender)
                    == .duplicate(of: MessageID(originals[sender] ?? 0)))
        }
        // sender1 sends again: sender2 (now the oldest) gives up its place.
        let again = harness.must(.send(general, clientMessageID: "c2", text: "again", clientCreatedMs: 0), by: senders[1])
        #expect(harness.state.room(general)?.recentClientIDs.count == 3)
        #expect(harness.run(.send(general, clientMessageID: "c2", text: "again", clientCreatedMs: 0), by: senders[1])
                == .duplicate(of: MessageID(again)))
        if case .accepted = harness.run(.send(general, clientMessageID: "c1", text: "hi", clientCreatedMs: 0), by: senders[2]) {
        } else {
            Issue.record("sender2's window was evicted: its old id is a new message")
        }
    }

    @Test func applyIsDeterministicAndEvolvedIsPure() {
        var harness = world()
        harness.must(.join(secret), by: bob)
        harness.must(.send(secret, clientMessageID: "a", text: "hello", clientCreatedMs: 0), by: bob)
        let state = harness.state
        let event = ChatEvent(timestampMs: 1, actor: carol, room: general, body: .memberJoined)
        let next = state.evolved(by: event, at: 100)
        #expect(state == harness.state, "evolved leaves the original untouched")
        #expect(next.room(general)?.members.contains(carol) == true)
    }

    @Test func eventsTheRulesWouldNotProduceAreIgnoredByApply() {
        var state = RoomState()
        state.apply(ChatEvent(timestampMs: 1, actor: bob, room: general, body: .memberJoined), at: 0)
        #expect(state.rooms.isEmpty)
        state.apply(ChatEvent(timestampMs: 1, actor: alice, room: general, body: .roomCreated(name: "G", isPrivate: false)), at: 1)
        state.apply(ChatEvent(timestampMs: 2, actor: bob, room: general, body: .roomCreated(name: "Other", isPrivate: true)), at: 2)
        #expect(state.room(general)?.owner == alice && state.room(general)?.name == "G")
    }

    /// Replay places events on another thread with a `Placer`: it must give exactly the
    /// placement the state itself gives, for any sequence of events (including ones the rules
    /// would not produce), starting from any state; and applying the placed events in chunks,
    /// room by room, must give the state that applying them one by one gives.
    @Test func aPlacerFollowsTheStateExactly() {
        var generator = SystemRandomNumberGenerator()
        let rooms = [general, secret, room("r3"), room("K"), journaled(room: "\u{212A}")]  // Kelvin sign == "K"
        let users = [alice, bob, carol, user("dave"), user("zoë"), user("K"), journaled(user: "\u{212A}")]
        func randomEvent() -> ChatEvent {
            let body: ChatEvent.Body
            let message = MessageID(UInt64.random(in: 0..<50, using: &generator))
            switch Int.random(in: 0..<11, using: &generator) {
            case 0: body = .roomCreated(name: "R", isPrivate: Bool.random(using: &generator))
            case 1: body = .memberJoined
            case 2: body = .memberInvited(user: users.randomElement(using: &generator) ?? bob)
            case 3: body = .messageDeleted(message: message)
            case 4: body = .directRoomCreated(peer: users.randomElement(using: &generator) ?? bob)
            case 5: body = .reactionAdded(message: message, emoji: ["👍", "🎉"].randomElement(using: &generator) ?? "👍")
            case 6: body = .reactionRemoved(message: message, emoji: "👍")
            case 7: body = .readMarked(message: message)
            case 8: body = .memberLeft
            default: body = .messageSent(clientMessageID: "c\(Int.random(in: 0..<5, using: &generator))", text: "t", clientCreatedMs: 0,
                                         replyTo: Bool.random(using: &generator) ? message : nil)
            }
            return ChatEvent(timestampMs: 1, actor: users.randomElement(using: &generator) ?? alice,
                             room: rooms.randomElement(using: &generator) ?? general, body: body)
        }
        // A cap of three senders' windows per room, for seven users: eviction happens on both paths.
        var limits = ChatLimits()
        limits.clientIDSendersPerRoomMax = 3
        for _ in 0..<50 {
            var state = RoomState(limits: limits)
            for offset in 0..<UInt64.random(in: 0..<20, using: &generator) { state.apply(randomEvent(), at: offset) }
            var placer = RoomState.Placer(mirroring: state)
            var placed = state
            // Replay applies the placed items a chunk at a time, room by room (`apply(_:)`).
            var batched = state
            var items: [RoomState.PlacedItem] = []
            for offset in 20..<UInt64(80) {
                let event = randomEvent()
                // Messages go the way replay takes them, from their record's bytes, when their
                // names are plain ASCII (the bytes cache then meets "K" and the Kelvin sign).
                let fromBytes = try? ChatEventCodec.withMessageSent(ChatEventCodec.encode(event), includeText: false) { fields in
                    placer.placeMessage(offset: offset, fields: fields)
                }
                switch fromBytes {
                case .some(.some(let message)):
                    #expect(state.placement(of: event).room == message.room, "\(event)")
                    placed.apply([.message(message)])
                    items.append(.message(message))
                case .some(.none):
                    #expect(state.placement(of: event).room == -1, "\(event)")
                case .none:
                    let placement = placer.place(event)
                    #expect(placement == state.placement(of: event), "\(event)")
                    placed.apply(event, at: offset, placement: placement)
                    items.append(.event(offset: offset, event, placement))
                }
                state.apply(event, at: offset)
                if Int.random(in: 0..<15, using: &generator) == 0 {
                    batched.apply(items)
                    items = []
                }
            }
            batched.apply(items)
            #expect(placed == state)
            #expect(placed.users == state.users)
            #expect(batched == state)
            #expect(batched.users == state.users)
        }
    }

    @Test func invalidIdentifiersAreRefused() {
        #expect(UserID("") == nil)
        #expect(UserID(String(repeating: "u", count: 65)) == nil)
        #expect(UserID("tab\there") == nil)
        #expect(RoomID(String(repeating: "r", count: 128)) != nil)
        #expect(RoomID(String(repeating: "r", count: 129)) == nil)
    }

    /// Swift's `==` is canonical equivalence: "\u{212A}" (Kelvin) == "K". Identifiers not in NFC
    /// are refused, so two valid identifiers are equal exactly when their bytes are.
    @Test func identifiersNotInNFCAreRefusedSoEqualityIsByteEquality() {
        #expect("\u{212A}" == "K", "the equivalence this guards against")
        #expect(UserID("\u{212A}") == nil)
        #expect(UserID("jose\u{301}") == nil)
        #expect(RoomID("caf\u{65}\u{301}") == nil)
        #expect(UserID("jos\u{E9}")?.value == "jos\u{E9}")
        #expect(RoomID("日本語の部屋") != nil)
        #expect(UserID("K") != nil)
    }
}
