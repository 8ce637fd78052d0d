extension RoomState {
    /// The room rules: what `actor` asking for `command` at `nowMs` produces in this state.
    ///
    /// Who may do what:
    /// - anyone may create a room that does not exist yet, and becomes its owner and first member;
    /// - anyone may join a public room; a private room only its owner and users it invited;
    /// - only the owner invites to a private room, revokes invitations and removes members
    ///   (not itself); a removed user must be invited again;
    /// - a member may leave; the owner may leave and join again, and stays the owner;
    /// - anyone may send to and read a public room; only members a private one;
    /// - only the author edits a message; the author or the owner deletes it; both only within
    ///   the room's edit window (its last `editableMessagesPerRoom` messages);
    /// - a send whose client message id is among the sender's last `clientMessageIDWindow` ids
    ///   in that room is a duplicate: no event, and the original message is returned;
    /// - a reply, a reaction and a read marker name a message of the room's edit window (a
    ///   reply and a reaction one that is not deleted); reacting again with the same emoji, taking
    ///   back a reaction one has not made, and a read marker that does not move forward change
    ///   nothing (no event); a message carries at most `reactionsPerMessageMax` distinct reactions;
    /// - only members move their read marker; a member who joins a room that has messages has
    ///   read them (its marker is set to the last);
    /// - a direct room is opened by either of its two users with the other, who must be known
    ///   (`knows`); it is created on first use, with both as members; nobody is invited into it
    ///   or removed from it, and only its two users may join it again after leaving.
    ///
    /// Pure: no I/O, no clock (the caller passes `nowMs`).
    public func decide(_ command: ChatCommand, by actor: UserID, at nowMs: Int64) -> Decision {
        func reject(_ code: Rejection.Code, _ message: String) -> Decision {
            .rejected(Rejection(code, message))
        }
        func accept(_ body: ChatEvent.Body) -> Decision {
            .accepted([ChatEvent(timestampMs: nowMs, actor: actor, room: command.room, body: body)])
        }
        let roomID = command.room
        if case .revokeTokens = command {
            // Tokens carry their issue time in whole seconds: the revocation covers the second
            // it is made in (a token issued then, before or after it, is refused).
            return accept(.tokensRevoked(beforeMs: (nowMs / 1000 + 1) * 1000))
        }
        if case .openDirect(let peer) = command {
            return openDirect(with: peer, by: actor, at: nowMs)
        }
        if case .createRoom(_, let name, let isPrivate) = command {
            guard room(roomID) == nil else { return reject(.roomExists, "room \(roomID) already exists") }
            guard Self.isValidText(name, maxBytes: limits.roomNameBytesMax, allowNewlines: false) else {
                return reject(.invalidName, "a room name is 1 to \(limits.roomNameBytesMax) bytes without control characters")
            }
            return accept(.roomCreated(name: name, isPrivate: isPrivate))
        }
        guard let room = room(roomID) else { return reject(.roomNotFound, "no room \(roomID)") }
        let isOwner = room.owner == actor
        let isMember = room.members.contains(actor)

        switch command {
        case .createRoom, .revokeTokens, .openDirect:
            preconditionFailure("handled above")

        case .invite(_, let user):
            guard !room.isDirect else { return reject(.directRoom, "nobody can be invited into the direct room \(roomID)") }
            guard room.isPrivate else { return reject(.notPrivate, "room \(roomID) is public: anyone may join it") }
            guard isOwner else { return reject(.notOwner, "only the owner of \(roomID) may invite") }
            guard !room.members.contains(user) else { return reject(.alreadyMember, "\(user) is already a member of \(roomID)") }
            guard !room.invited.contains(user) else { return reject(.alreadyInvited, "\(user) is already invited to \(roomID)") }
            return accept(.memberInvited(user: user))

        case .revokeInvitation(_, let user):
            guard !room.isDirect else { return reject(.directRoom, "the direct room \(roomID) has no invitations") }
            guard isOwner else { return reject(.notOwner, "only the owner of \(roomID) may revoke invitations") }
            guard room.invited.contains(user) else { return reject(.notInvited, "\(user) has no pending invitation to \(roomID)") }
            return accept(.invitationRevoked(user: user))

        case .join:
            guard !isMember else { return reject(.alreadyMember, "\(actor) is already a member of \(roomID)") }
            guard !room.isDirect || room.mayJoin(actor) else {
                return reject(.directRoom, "only its two users may join the direct room \(roomID)")
            }
            guard room.mayJoin(actor) else {
                return reject(.notInvited, "room \(roomID) is private: its owner must invite \(actor) first")
            }
            return .accepted(joining(room, roomID, by: actor, at: nowMs))

        case .leave:
            guard isMember else { return reject(.notMember, "\(actor) is not a member of \(roomID)") }
            return accept(.memberLeft)

        case .remove(_, let user):
            guard !room.isDirect else { return reject(.directRoom, "nobody can be removed from the direct room \(roomID)") }
            guard isOwner else { return reject(.notOwner, "only the owner of \(roomID) may remove members") }
            guard user != room.owner else { return reject(.cannotRemoveOwner, "the owner cannot be removed from \(roomID)") }
            guard room.members.contains(user) else { return reject(.notMember, "\(user) is not a member of \(roomID)") }
            return accept(.memberRemoved(user: user))

        case .send(_, let clientMessageID, let text, let clientCreatedMs, let clientCreatedText, let replyTo):
            guard room.mayRead(actor) else { return reject(.notMember, "only members may send to the private room \(roomID)") }
            guard Self.isValidText(clientMessageID, maxBytes: limits.clientMessageIDBytesMax, allowNewlines: false) else {
                return reject(.invalidClientMessageID, "a client message id is 1 to \(limits.clientMessageIDBytesMax) bytes without control characters")
            }
            guard Self.isValidText(text, maxBytes: limits.messageBytesMax, allowNewlines: true) else {
                return reject(.invalidText, "a message is 1 to \(limits.messageBytesMax) bytes of text")
            }
            if let author = ref(of: actor),
               let previous = room.recentClientIDs[author]?.last(where: { $0.clientMessageID == clientMessageID }) {
                return .duplicate(of: previous.message)
            }
            if let clientCreatedText, !Self.isValidText(clientCreatedText, maxBytes: limits.clientMessageIDBytesMax, allowNewlines: false) {
                return reject(.invalidText, "a client time given as text is 1 to \(limits.clientMessageIDBytesMax) bytes without control characters")
            }
            if let replyTo {
                if let refusal = liveMessage(replyTo, in: room, roomID, for: "reply to") { return .rejected(refusal) }
            }
            return accept(.messageSent(clientMessageID: clientMessageID, text: text, clientCreatedMs: clientCreatedMs,
                                       clientCreatedText: clientCreatedText, replyTo: replyTo))

        case .edit(_, let message, let text):
            guard room.mayRead(actor) else { return reject(.notMember, "only members may edit in the private room \(roomID)") }
            guard let index = room.recentIndex(of: message) else {
                return reject(.messageNotFound, "no message \(message) among the last \(limits.editableMessagesPerRoom) of \(roomID)")
            }
            let meta = room.recentMessages[index]
            guard !meta.deleted else { return reject(.messageDeleted, "message \(message) was deleted") }
            guard meta.author == ref(of: actor) else { return reject(.notAuthor, "only the author may edit message \(message)") }
            guard Self.isValidText(text, maxBytes: limits.messageBytesMax, allowNewlines: true) else {
                return reject(.invalidText, "a message is 1 to \(limits.messageBytesMax) bytes of text")
            }
            return accept(.messageEdited(message: message, text: text))

        case .delete(_, let message):
            // Membership first: a non-member learns nothing of a private room's messages.
            guard room.mayRead(actor) else { return reject(.notMember, "only members may delete in the private room \(roomID)") }
            guard let index = room.recentIndex(of: message) else {
                return reject(.messageNotFound, "no message \(message) among the last \(limits.editableMessagesPerRoom) of \(roomID)")
            }
            let meta = room.recentMessages[index]
            guard !meta.deleted else { return reject(.messageDeleted, "message \(message) was already deleted") }
            guard meta.author == ref(of: actor) || isOwner else {
                return reject(.notAuthor, "only the author or the owner of \(roomID) may delete message \(message)")
            }
            return accept(.messageDeleted(message: message))

        case .react(_, let message, let emoji), .unreact(_, let message, let emoji):
            guard room.mayRead(actor) else { return reject(.notMember, "only members may react in the private room \(roomID)") }
            guard Self.isValidText(emoji, maxBytes: limits.emojiBytesMax, allowNewlines: false),
                  !emoji.unicodeScalars.contains(where: \.properties.isWhitespace) else {
                return reject(.invalidEmoji, "a reaction is 1 to \(limits.emojiBytesMax) bytes without spaces or control characters")
            }
            if let refusal = liveMessage(message, in: room, roomID, for: "react to") { return .rejected(refusal) }
            let reactions = room.reactions[message] ?? []
            let existing = reactions.first { $0.emoji == emoji }
            if case .unreact = command {
                guard existing?.users.contains(actor) == true else { return .accepted([]) }
                return accept(.reactionRemoved(message: message, emoji: emoji))
            }
            if existing?.users.contains(actor) == true { return .accepted([]) }
            guard existing != nil || reactions.count < limits.reactionsPerMessageMax else {
                return reject(.tooManyReactions, "message \(message) already has \(limits.reactionsPerMessageMax) different reactions")
            }
            return accept(.reactionAdded(message: message, emoji: emoji))

        case .markRead(_, let message):
            guard isMember else { return reject(.notMember, "only members of \(roomID) have a read marker in it") }
            guard room.recentIndex(of: message) != nil else {
                return reject(.messageNotFound, "no message \(message) among the last \(limits.editableMessagesPerRoom) of \(roomID)")
            }
            if let current = room.readMarkers[actor], message <= current { return .accepted([]) }
            return accept(.readMarked(message: message))
        }
    }

    /// The refusal of a reply or reaction to `message`, or nil when it is a message of the
    /// room's window that is not deleted.
    private func liveMessage(_ message: MessageID, in room: Room, _ roomID: RoomID, for action: String) -> Rejection? {
        guard let index = room.recentIndex(of: message) else {
            return Rejection(.messageNotFound, "no message \(message) to \(action) among the last \(limits.editableMessagesPerRoom) of \(roomID)")
        }
        guard !room.recentMessages[index].deleted else { return Rejection(.messageDeleted, "message \(message) was deleted") }
        return nil
    }

    /// The events of `actor` joining `room`: the join, and a read marker at the room's last
    /// message when it has any (what was there when it joined is not unread).
    private func joining(_ room: Room, _ roomID: RoomID, by actor: UserID, at nowMs: Int64) -> [ChatEvent] {
        var events = [ChatEvent(timestampMs: nowMs, actor: actor, room: roomID, body: .memberJoined)]
        if let last = room.recentMessages.last?.id {
            events.append(ChatEvent(timestampMs: nowMs, actor: actor, room: roomID, body: .readMarked(message: last)))
        }
        return events
    }

    /// `openDirect`: the direct room of `actor` and `peer`, joined again or created.
    private func openDirect(with peer: UserID, by actor: UserID, at nowMs: Int64) -> Decision {
        guard peer != actor else { return .rejected(Rejection(.directRoom, "a direct room is between two different users")) }
        if let existing = directRoom(of: actor, and: peer), let room = room(existing) {
            return .accepted(room.members.contains(actor) ? [] : joining(room, existing, by: actor, at: nowMs))
        }
        guard knows(peer) else {
            return .rejected(Rejection(.userNotFound, "no user \(peer): a direct room is opened with a member of a room or an author of a message"))
        }
        return .accepted([ChatEvent(timestampMs: nowMs, actor: actor, room: newDirectRoomID(actor, peer), body: .directRoomCreated(peer: peer))])
    }

    /// The id of a new direct room: `dm:` and the two names in order, joined by `:`, when that
    /// is a valid room id no room has; otherwise `dm:` and the first free number from the room
    /// count up. Decided from the state alone, so every replica of the decision agrees.
    func newDirectRoomID(_ one: UserID, _ other: UserID) -> RoomID {
        let (first, second) = one < other ? (one, other) : (other, one)
        if let readable = RoomID("dm:\(first.value):\(second.value)"), room(readable) == nil { return readable }
        var number = roomCount
        while true {
            if let numbered = RoomID("dm:\(number)"), room(numbered) == nil { return numbered }
            number += 1
        }
    }

    /// Non-empty, at most `maxBytes` of UTF-8, no control characters (newlines and tabs
    /// allowed in message text).
    static func isValidText(_ text: String, maxBytes: Int, allowNewlines: Bool) -> Bool {
        let count = text.utf8.count
        guard count > 0, count <= maxBytes else { return false }
        return !containsControlCharacters(text, allowNewlines: allowNewlines)
    }
}
