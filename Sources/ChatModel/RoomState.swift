/// What the writer decides with: every room, its owner, members and invitations, the room's
/// recent messages (for edit and delete rights) and each sender's recent client message ids
/// (for idempotent retries).
///
/// A projection of the journal: `apply` folds events in offset order, so the same journal
/// always gives the same state. Small and in memory: per room it holds at most
/// `ChatLimits.editableMessagesPerRoom` messages and, per sender, `clientMessageIDWindow` ids.
/// A value type.
public struct RoomState: Sendable, Equatable {
    public let limits: ChatLimits
    public internal(set) var rooms: [RoomID: Room] = [:]

    public init(limits: ChatLimits = ChatLimits()) {
        self.limits = limits
    }

    /// A state restored from a snapshot.
    public init(limits: ChatLimits, rooms: [RoomID: Room]) {
        self.limits = limits
        self.rooms = rooms
    }

    public struct Room: Sendable, Equatable {
        public var name: String
        public var owner: UserID
        public var isPrivate: Bool
        public var createdMs: Int64
        public var members: Set<UserID>
        /// Users invited and not yet joined.
        public var invited: Set<UserID>
        /// The room's last messages, in offset order.
        public var recentMessages: BoundedRing<MessageMeta>
        /// Per sender, their last client message ids in this room.
        public var recentClientIDs: [UserID: BoundedRing<ClientMessage>]

        public init(name: String, owner: UserID, isPrivate: Bool, createdMs: Int64, limits: ChatLimits) {
            self.name = name
            self.owner = owner
            self.isPrivate = isPrivate
            self.createdMs = createdMs
            self.members = [owner]
            self.invited = []
            self.recentMessages = BoundedRing(capacity: limits.editableMessagesPerRoom)
            self.recentClientIDs = [:]
        }

        /// The index in `recentMessages` of `message`, if it is still in the edit window.
        public func recentIndex(of message: MessageID) -> Int? {
            var low = 0
            var high = recentMessages.count
            while low < high {
                let mid = (low + high) / 2
                let id = recentMessages[mid].id
                if id == message { return mid }
                if id < message { low = mid + 1 } else { high = mid }
            }
            return nil
        }

        mutating func recordMessage(_ meta: MessageMeta, clientMessage: ClientMessage, window: Int) {
            recentMessages.append(meta)
            recentClientIDs[meta.author, default: BoundedRing(capacity: window)].append(clientMessage)
        }

        mutating func markDeleted(_ message: MessageID) {
            if let index = recentIndex(of: message) { recentMessages[index].deleted = true }
        }

        public func mayRead(_ user: UserID) -> Bool {
            !isPrivate || members.contains(user)
        }
    }

    public struct MessageMeta: Sendable, Equatable {
        public var id: MessageID
        public var author: UserID
        public var deleted: Bool

        public init(id: MessageID, author: UserID, deleted: Bool) {
            self.id = id
            self.author = author
            self.deleted = deleted
        }
    }

    public struct ClientMessage: Sendable, Equatable {
        public var clientMessageID: String
        public var message: MessageID

        public init(clientMessageID: String, message: MessageID) {
            self.clientMessageID = clientMessageID
            self.message = message
        }
    }

    /// Folds one event, committed at `offset`, into the state.
    ///
    /// Never fails: an event the rules would not have produced for this state (possible only
    /// from a journal written under other rules) changes nothing it cannot apply cleanly, so
    /// replay always completes and stays deterministic.
    public mutating func apply(_ event: ChatEvent, at offset: UInt64) {
        if case .roomCreated(let name, let isPrivate) = event.body {
            if rooms[event.room] == nil {
                rooms[event.room] = Room(name: name, owner: event.actor, isPrivate: isPrivate,
                                         createdMs: event.timestampMs, limits: limits)
            }
            return
        }
        // Each case mutates the room in place through the dictionary's subscript.
        let id = event.room
        guard rooms[id] != nil else { return }
        switch event.body {
        case .roomCreated:
            break
        case .memberInvited(let user):
            rooms[id]?.invited.insert(user)
        case .invitationRevoked(let user):
            rooms[id]?.invited.remove(user)
        case .memberJoined:
            rooms[id]?.members.insert(event.actor)
            rooms[id]?.invited.remove(event.actor)
        case .memberLeft:
            rooms[id]?.members.remove(event.actor)
        case .memberRemoved(let user):
            rooms[id]?.members.remove(user)
            rooms[id]?.invited.remove(user)
        case .messageSent(let clientMessageID, _, _):
            let message = MessageID(offset)
            let window = limits.clientMessageIDWindow
            rooms[id]?.recordMessage(MessageMeta(id: message, author: event.actor, deleted: false),
                                     clientMessage: ClientMessage(clientMessageID: clientMessageID, message: message),
                                     window: window)
        case .messageEdited:
            break
        case .messageDeleted(let message):
            rooms[id]?.markDeleted(message)
        }
    }

    /// `apply` as a pure function: the state after `event`.
    public func evolved(by event: ChatEvent, at offset: UInt64) -> RoomState {
        var next = self
        next.apply(event, at: offset)
        return next
    }
}
