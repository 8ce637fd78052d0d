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
    ///   in that room is a duplicate: no event, and the original message is returned.
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
        case .createRoom, .revokeTokens:
            preconditionFailure("handled above")

        case .invite(_, let user):
            guard room.isPrivate else { return reject(.notPrivate, "room \(roomID) is public: anyone may join it") }
            guard isOwner else { return reject(.notOwner, "only the owner of \(roomID) may invite") }
            guard !room.members.contains(user) else { return reject(.alreadyMember, "\(user) is already a member of \(roomID)") }
            guard !room.invited.contains(user) else { return reject(.alreadyInvited, "\(user) is already invited to \(roomID)") }
            return accept(.memberInvited(user: user))

        case .revokeInvitation(_, let user):
            guard isOwner else { return reject(.notOwner, "only the owner of \(roomID) may revoke invitations") }
            guard room.invited.contains(user) else { return reject(.notInvited, "\(user) has no pending invitation to \(roomID)") }
            return accept(.invitationRevoked(user: user))

        case .join:
            guard !isMember else { return reject(.alreadyMember, "\(actor) is already a member of \(roomID)") }
            guard !room.isPrivate || isOwner || room.invited.contains(actor) else {
                return reject(.notInvited, "room \(roomID) is private: its owner must invite \(actor) first")
            }
            return accept(.memberJoined)

        case .leave:
            guard isMember else { return reject(.notMember, "\(actor) is not a member of \(roomID)") }
            return accept(.memberLeft)

        case .remove(_, let user):
            guard isOwner else { return reject(.notOwner, "only the owner of \(roomID) may remove members") }
            guard user != room.owner else { return reject(.cannotRemoveOwner, "the owner cannot be removed from \(roomID)") }
            guard room.members.contains(user) else { return reject(.notMember, "\(user) is not a member of \(roomID)") }
            return accept(.memberRemoved(user: user))

        case .send(_, let clientMessageID, let text, let clientCreatedMs, let clientCreatedText):
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
            return accept(.messageSent(clientMessageID: clientMessageID, text: text, clientCreatedMs: clientCreatedMs,
                                       clientCreatedText: clientCreatedText))

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
