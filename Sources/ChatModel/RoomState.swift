/// What the writer decides with: every room, its owner, members and invitations, the room's
/// recent messages (for edit and delete rights) and each sender's recent client message ids
/// (for idempotent retries).
///
/// A projection of the journal: `apply` folds events in offset order, so the same journal
/// always gives the same state. Small and in memory: per room it holds at most
/// `ChatLimits.editableMessagesPerRoom` messages and, per sender, `clientMessageIDWindow` ids.
/// A value type. Rooms are stored in an array indexed by a dictionary, so that applying an
/// event mutates the room in place with one hash lookup.
public struct RoomState: Sendable, Equatable {
    public let limits: ChatLimits
    var roomIndex: [RoomID: Int] = [:]
    var roomList: [Room] = []
    /// Every user who has sent a message, in order of first message: the per-room message
    /// windows refer to authors by their index here (`UserRef`), which keeps those windows
    /// free of strings and reference counting on the hot replay path.
    public internal(set) var users: [UserID] = []
    var userRefs: [UserID: UserRef] = [:]
    /// Per user, the time (ms) before which its tokens were revoked (`tokensRevoked`): tokens
    /// issued before it are refused. One entry per user who has had tokens revoked.
    public internal(set) var tokensRevokedBefore: [UserID: Int64] = [:]
    /// The direct room of each pair of users that has one (derived from the rooms: a direct
    /// room's owner and peer).
    var directRooms: [UserPair: RoomID] = [:]

    public init(limits: ChatLimits = ChatLimits()) {
        self.limits = limits
    }

    /// A state restored from a snapshot: `users` is the author table the rooms' `UserRef`s
    /// index.
    public init(limits: ChatLimits, users: [UserID], rooms: [RoomID: Room], tokensRevokedBefore: [UserID: Int64] = [:]) {
        self.limits = limits
        self.tokensRevokedBefore = tokensRevokedBefore
        self.users = users
        for (index, user) in users.enumerated() { userRefs[user] = UserRef(UInt32(index)) }
        for (id, room) in rooms.sorted(by: { $0.key < $1.key }) {
            roomIndex[id] = roomList.count
            roomList.append(room)
            if let peer = room.directPeer { directRooms[UserPair(room.owner, peer)] = id }
        }
    }

    /// Two users, in either order.
    struct UserPair: Hashable, Sendable {
        let first: UserID
        let second: UserID
        init(_ one: UserID, _ other: UserID) {
            (first, second) = one < other ? (one, other) : (other, one)
        }
    }

    /// The direct room of `one` and `other`, if they have one.
    public func directRoom(of one: UserID, and other: UserID) -> RoomID? {
        directRooms[UserPair(one, other)]
    }

    /// Whether the room state knows `user`: a member of a room, invited to one, or the author
    /// of a message (the users a direct room may be opened with).
    public func knows(_ user: UserID) -> Bool {
        userRefs[user] != nil || roomList.contains { $0.members.contains(user) || $0.invited.contains(user) }
    }

    /// Every room by id (built on each call: for listing, not for hot paths).
    public var rooms: [RoomID: Room] {
        roomIndex.mapValues { roomList[$0] }
    }

    public var roomCount: Int { roomList.count }

    /// The room with this id.
    public func room(_ id: RoomID) -> Room? {
        roomIndex[id].map { roomList[$0] }
    }

    /// The reference of a user who has sent a message, or nil.
    public func ref(of user: UserID) -> UserRef? {
        userRefs[user]
    }

    public func user(_ ref: UserRef) -> UserID {
        users[Int(ref.index)]
    }

    private mutating func intern(_ user: UserID) -> UserRef {
        if let ref = userRefs[user] { return ref }
        let ref = UserRef(UInt32(users.count))
        users.append(user)
        userRefs[user] = ref
        return ref
    }

    /// Equal when they hold the same rooms with the same contents, whatever the order the
    /// rooms were created or restored in.
    public static func == (lhs: RoomState, rhs: RoomState) -> Bool {
        guard lhs.limits == rhs.limits, lhs.users == rhs.users, lhs.roomList.count == rhs.roomList.count,
              lhs.tokensRevokedBefore == rhs.tokensRevokedBefore else { return false }
        return lhs.roomIndex.allSatisfy { id, index in rhs.room(id) == lhs.roomList[index] }
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
        public var recentClientIDs: UserRefMap<BoundedRing<ClientMessage>>
        /// A direct room's other user (its owner opened it); nil for other rooms.
        public var directPeer: UserID?
        /// Each member's read marker: the last message it has read (`readMarked`). None for a
        /// member that has read nothing (or joined before there were any messages).
        public var readMarkers: [UserID: MessageID] = [:]
        /// The reactions to the messages of `recentMessages` that have any.
        public var reactions: [MessageID: [Reaction]] = [:]

        public init(name: String, owner: UserID, isPrivate: Bool, createdMs: Int64, limits: ChatLimits) {
            self.name = name
            self.owner = owner
            self.isPrivate = isPrivate
            self.createdMs = createdMs
            self.members = [owner]
            self.invited = []
            self.recentMessages = BoundedRing(capacity: limits.editableMessagesPerRoom)
            self.recentClientIDs = UserRefMap()
        }

        public var isDirect: Bool { directPeer != nil }

        /// Whether `user` may join: anyone a public room; a private one its owner and the users
        /// it invited; a direct one only its two users.
        public func mayJoin(_ user: UserID) -> Bool {
            if let directPeer { return user == owner || user == directPeer }
            return !isPrivate || owner == user || invited.contains(user)
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

        public func mayRead(_ user: UserID) -> Bool {
            !isPrivate || members.contains(user)
        }
    }

    /// A user by index in `RoomState.users`.
    public struct UserRef: Hashable, Comparable, Sendable {
        public let index: UInt32
        public init(_ index: UInt32) { self.index = index }
        public static func < (lhs: UserRef, rhs: UserRef) -> Bool { lhs.index < rhs.index }
    }

    public struct MessageMeta: Sendable, Equatable {
        public var id: MessageID
        public var author: UserRef
        public var deleted: Bool

        public init(id: MessageID, author: UserRef, deleted: Bool) {
            self.id = id
            self.author = author
            self.deleted = deleted
        }
    }

    /// One reaction to a message: the text and who reacted with it, in the order they did.
    public struct Reaction: Sendable, Equatable {
        public var emoji: String
        public var users: [UserID]

        public init(emoji: String, users: [UserID]) {
            self.emoji = emoji
            self.users = users
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
        apply(event, at: offset, placement: placement(of: event))
    }

    /// Where `event` lands in this state: its room's slot and, for a message, its author's
    /// reference, each marked new when applying the event creates it.
    public func placement(of event: ChatEvent) -> Placement {
        Self.placement(of: event, roomSlot: { roomIndex[$0].map(Int32.init) }, roomCount: roomList.count,
                       authorRef: { userRefs[$0]?.index }, authorCount: users.count)
    }

    /// The one placement rule, for the state and for a `Placer`, which differ only in where
    /// they look rooms and authors up: a room is new only when created, an author is placed
    /// only for a message to an existing room, and new ones take the next slot.
    private static func placement(
        of event: ChatEvent,
        roomSlot: (RoomID) -> Int32?,
        roomCount: Int,
        authorRef: (UserID) -> UInt32?,
        authorCount: Int
    ) -> Placement {
        var placement = Placement()
        if let slot = roomSlot(event.room) {
            placement.room = slot
        } else if event.createsRoom {
            placement.room = Int32(roomCount)
            placement.isNewRoom = true
        }
        if case .messageSent = event.body, placement.room >= 0, !placement.isNewRoom {
            if let ref = authorRef(event.actor) {
                placement.author = ref
            } else {
                placement.author = UInt32(authorCount)
                placement.isNewAuthor = true
            }
        }
        return placement
    }

    /// `apply` with the event's placement worked out beforehand (`placement(of:)`, or a
    /// `Placer` that followed the same events, on another thread during replay), so that
    /// applying looks nothing up by name. The placement must be the one `placement(of:)`
    /// gives for this state (checked in debug builds).
    public mutating func apply(_ event: ChatEvent, at offset: UInt64, placement: Placement) {
        assert(placement == self.placement(of: event), "a placement that does not match the state")
        if case .tokensRevoked(let beforeMs) = event.body {
            tokensRevokedBefore[event.actor] = max(beforeMs, tokensRevokedBefore[event.actor] ?? .min)
            return
        }
        guard placement.room >= 0 else { return }  // an event for a room that does not exist
        let index = Int(placement.room)
        switch event.body {
        case .roomCreated(let name, let isPrivate):
            if placement.isNewRoom {
                roomIndex[event.room] = index
                roomList.append(Room(name: name, owner: event.actor, isPrivate: isPrivate,
                                     createdMs: event.timestampMs, limits: limits))
            }
        case .memberInvited(let user):
            roomList[index].invited.insert(user)
        case .invitationRevoked(let user):
            roomList[index].invited.remove(user)
        case .memberJoined:
            roomList[index].members.insert(event.actor)
            roomList[index].invited.remove(event.actor)
        case .directRoomCreated(let peer):
            if placement.isNewRoom {
                var room = Room(name: "", owner: event.actor, isPrivate: true, createdMs: event.timestampMs, limits: limits)
                room.members.insert(peer)
                room.directPeer = peer
                roomIndex[event.room] = index
                roomList.append(room)
                directRooms[UserPair(event.actor, peer)] = event.room
            }
        case .memberLeft:
            roomList[index].members.remove(event.actor)
            roomList[index].readMarkers.removeValue(forKey: event.actor)
        case .memberRemoved(let user):
            roomList[index].members.remove(user)
            roomList[index].invited.remove(user)
            roomList[index].readMarkers.removeValue(forKey: user)
        case .messageSent(let clientMessageID, _, _, _, _):
            applyMessage(PlacedMessage(offset: offset, room: placement.room, author: placement.author,
                                       newAuthor: placement.isNewAuthor ? event.actor : nil, clientMessageID: clientMessageID))
        case .messageEdited:
            break
        case .messageDeleted(let message):
            if let position = roomList[index].recentIndex(of: message) {
                roomList[index].recentMessages[position].deleted = true
            }
            roomList[index].reactions.removeValue(forKey: message)
        case .reactionAdded(let message, let emoji):
            guard roomList[index].recentIndex(of: message) != nil else { return }
            var reactions = roomList[index].reactions[message] ?? []
            if let existing = reactions.firstIndex(where: { $0.emoji == emoji }) {
                if !reactions[existing].users.contains(event.actor) { reactions[existing].users.append(event.actor) }
            } else {
                reactions.append(Reaction(emoji: emoji, users: [event.actor]))
            }
            roomList[index].reactions[message] = reactions
        case .reactionRemoved(let message, let emoji):
            guard var reactions = roomList[index].reactions[message],
                  let existing = reactions.firstIndex(where: { $0.emoji == emoji }) else { return }
            reactions[existing].users.removeAll { $0 == event.actor }
            if reactions[existing].users.isEmpty { reactions.remove(at: existing) }
            roomList[index].reactions[message] = reactions.isEmpty ? nil : reactions
        case .readMarked(let message):
            let current = roomList[index].readMarkers[event.actor]
            if roomList[index].members.contains(event.actor), current.map({ message > $0 }) ?? true {
                roomList[index].readMarkers[event.actor] = message
            }
        case .tokensRevoked:
            preconditionFailure("handled above: it is about no room")
        }
    }

    /// A `messageSent` event reduced to what applying it needs, placed by a `Placer` from the
    /// record's bytes (`Placer.placeMessage`): replay then builds neither the room's nor the
    /// author's name.
    public struct PlacedMessage: Sendable, Equatable {
        public var offset: UInt64
        /// The room's slot (the room exists).
        public var room: Int32
        /// The author's `UserRef` index.
        public var author: UInt32
        /// The author, when this is their first message (`author` is then the next index).
        public var newAuthor: UserID?
        public var clientMessageID: String
    }

    private mutating func applyMessage(_ placed: PlacedMessage) {
        if let newAuthor = placed.newAuthor { register(newAuthor, as: placed.author) }
        applyMessageToRoom(placed)
    }

    /// A message's author, seen for the first time, takes the next reference (`ref`).
    mutating func register(_ author: UserID, as ref: UInt32) {
        assert(Int(ref) == users.count, "a new author placed at \(ref), not at the next reference \(users.count)")
        users.append(author)
        userRefs[author] = UserRef(ref)
    }

    /// What a message changes in its room: the room's window and its author's.
    mutating func applyMessageToRoom(_ placed: PlacedMessage) {
        assert(placed.room >= 0 && Int(placed.room) < roomList.count, "a placed message for a room that does not exist")
        assert(Int(placed.author) < users.count, "a placed message whose author is not registered")
        let index = Int(placed.room)
        let message = MessageID(placed.offset)
        let author = UserRef(placed.author)
        let wasFull = roomList[index].recentMessages.count == roomList[index].recentMessages.capacity
        roomList[index].recentMessages.append(MessageMeta(id: message, author: author, deleted: false))
        if wasFull, !roomList[index].reactions.isEmpty, let first = roomList[index].recentMessages.first?.id {
            // Reactions are kept for the messages of the window only.
            roomList[index].reactions = roomList[index].reactions.filter { $0.key >= first }
        }
        let window = limits.clientMessageIDWindow
        roomList[index].recentClientIDs.modify(author, default: { BoundedRing(capacity: window) }) {
            $0.append(ClientMessage(clientMessageID: placed.clientMessageID, message: message))
        }
        if roomList[index].recentClientIDs.count > limits.clientIDSendersPerRoomMax {
            evictOldestSender(inRoomAt: index)
        }
    }

    /// Drops the idempotency window of the room's sender whose last message is the oldest:
    /// what the room's own events decide, so replay in any chunking gives the same state.
    mutating func evictOldestSender(inRoomAt index: Int) {
        var oldest: (UserRef, MessageID)?
        for (sender, ring) in roomList[index].recentClientIDs {
            guard let last = ring.last?.message else { continue }
            if oldest.map({ last < $0.1 }) ?? true { oldest = (sender, last) }
        }
        if let (sender, _) = oldest { roomList[index].recentClientIDs.removeValue(forKey: sender) }
    }

    /// Where an event lands in a state (see `placement(of:)`).
    public struct Placement: Sendable, Equatable {
        /// The room's slot, or -1 when the event's room does not exist.
        public var room: Int32 = -1
        public var isNewRoom = false
        /// A message's author (`UserRef` index); unused for other events.
        public var author: UInt32 = 0
        public var isNewAuthor = false
        public init() {}
    }

    /// Follows the room slots and author references of a state through a sequence of events
    /// without the state itself, so that replay can place events on the thread that decodes
    /// them while another applies them. Gives exactly `placement(of:)` of the state the events
    /// are applied to, in order.
    public struct Placer: Sendable {
        private var rooms: [RoomID: Int32]
        private var authors: [UserID: UInt32]
        /// The slots and references above by the bytes of plain ASCII names, filled from those
        /// dictionaries on a miss (so names that are canonically equal but spelled
        /// differently still meet there): a hit builds no string and costs no SipHash.
        private var roomsByBytes = IdentifierCache()
        private var authorsByBytes = IdentifierCache()

        public init(mirroring state: RoomState) {
            rooms = state.roomIndex.mapValues(Int32.init)
            authors = state.userRefs.mapValues(\.index)
        }

        /// Places a `messageSent` event from its record's fields (`ChatEventCodec.messageSentFields`),
        /// by the rule of `place`: nil when its room does not exist (applying it would change
        /// nothing), and an author seen for the first time takes the next reference.
        public mutating func placeMessage(offset: UInt64, fields: ChatEventCodec.MessageSentFields) -> PlacedMessage? {
            let room: Int32
            if let cached = roomsByBytes.value(for: fields.room) {
                room = Int32(cached)
            } else {
                guard let slot = rooms[RoomID(unchecked: String(decoding: fields.room, as: UTF8.self))] else { return nil }
                roomsByBytes.insert(fields.room, value: UInt32(slot))
                room = slot
            }
            let author: UInt32
            var newAuthor: UserID?
            if let cached = authorsByBytes.value(for: fields.actor) {
                author = cached
            } else {
                let actor = UserID(unchecked: String(decoding: fields.actor, as: UTF8.self))
                if let known = authors[actor] {
                    author = known
                } else {
                    author = UInt32(authors.count)
                    authors[actor] = author
                    newAuthor = actor
                }
                authorsByBytes.insert(fields.actor, value: author)
            }
            return PlacedMessage(offset: offset, room: room, author: author, newAuthor: newAuthor,
                                 clientMessageID: String(decoding: fields.clientMessageID, as: UTF8.self))
        }

        public mutating func place(_ event: ChatEvent) -> Placement {
            let placement = RoomState.placement(of: event, roomSlot: { rooms[$0] }, roomCount: rooms.count,
                                                authorRef: { authors[$0] }, authorCount: authors.count)
            if placement.isNewRoom { rooms[event.room] = placement.room }
            if placement.isNewAuthor { authors[event.actor] = placement.author }
            return placement
        }
    }

    /// `apply` as a pure function: the state after `event`.
    public func evolved(by event: ChatEvent, at offset: UInt64) -> RoomState {
        var next = self
        next.apply(event, at: offset)
        return next
    }
}
