/// A persisted chat event: what happened, to which room, by whom, when (server time).
///
/// These are the journal's records once the chat layer gives them meaning. `FORMAT.md`
/// ("Chat events") specifies their binary encoding. A value type.
public struct ChatEvent: Sendable, Equatable {
    /// Server time, milliseconds since the Unix epoch.
    public var timestampMs: Int64
    /// The acting user: the creator, the inviter, the joiner, the sender, ...
    public var actor: UserID
    public var room: RoomID
    public var body: Body

    public init(timestampMs: Int64, actor: UserID, room: RoomID, body: Body) {
        self.timestampMs = timestampMs
        self.actor = actor
        self.room = room
        self.body = body
    }

    public enum Body: Sendable, Equatable {
        /// The actor created the room and owns it; the owner is its first member.
        case roomCreated(name: String, isPrivate: Bool)
        /// The actor (the owner) invited `user` to the private room.
        case memberInvited(user: UserID)
        /// The actor (the owner) withdrew `user`'s pending invitation.
        case invitationRevoked(user: UserID)
        /// The actor joined.
        case memberJoined
        /// The actor left.
        case memberLeft
        /// The actor (the owner) removed `user`; a removed user must be invited again.
        case memberRemoved(user: UserID)
        /// The actor sent a message; `clientMessageID` makes retries idempotent;
        /// `clientCreatedMs` is the time the client claims (not trusted for ordering);
        /// `clientCreatedText`, when the client gave that time as text (an ISO-8601 string),
        /// is that text as it came, so that it is echoed in the same form; `replyTo`, the
        /// message of the same room it answers.
        case messageSent(clientMessageID: String, text: String, clientCreatedMs: Int64, clientCreatedText: String? = nil,
                         replyTo: MessageID? = nil)
        /// The actor (the author) replaced the text of `message`.
        case messageEdited(message: MessageID, text: String)
        /// The actor (the author or the owner) deleted `message`.
        case messageDeleted(message: MessageID)
        /// Every token of the actor issued before `beforeMs` (server time, on a whole second)
        /// is refused from now on, on every node (`chatlog token revoke`). About no room:
        /// `room` is `RoomID.none`.
        case tokensRevoked(beforeMs: Int64)
        /// The actor opened a direct room with `peer`: a private room of exactly the two of
        /// them, both members from the start, which nobody else can be invited into or join.
        case directRoomCreated(peer: UserID)
        /// The actor reacted to `message` with `emoji` (a short text, usually one emoji).
        case reactionAdded(message: MessageID, emoji: String)
        /// The actor took its `emoji` reaction to `message` back.
        case reactionRemoved(message: MessageID, emoji: String)
        /// The actor has read the room up to and including `message` (its read marker).
        case readMarked(message: MessageID)
    }

    /// Whether this event creates its room.
    public var createsRoom: Bool {
        switch body {
        case .roomCreated, .directRoomCreated: true
        default: false
        }
    }

    /// The user this event ends the membership of: the removed user, or the one who left.
    public var departedMember: UserID? {
        switch body {
        case .memberRemoved(let user): user
        case .memberLeft: actor
        default: nil
        }
    }
}
