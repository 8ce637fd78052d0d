import ChatModel
import Journal
import Projections

/// What users may read: rooms, rosters and history, as the tailer applied them (History as
/// its writer applied it), under the rooms' privacy rules. Socket events (`members`,
/// `my-groups`, `history`) and the HTTP API's reads both come here.
extension ChatService {
    /// A room as a list shows it.
    struct RoomSummary: Sendable, Equatable {
        var id: RoomID
        var name: String
        var owner: UserID
        var isPrivate: Bool
        var memberCount: Int
        /// Whether the asking user is a member.
        var isMember: Bool
        /// A direct room's other user, as the asking user sees it (nil: not a direct room).
        var directWith: UserID?
        /// The asking user's read marker in the room.
        var lastRead: MessageID?
        /// What the asking user has not read (`inbox(of:)` fills it in).
        var unread: HistoryProjection.Unread?

        init(_ id: RoomID, _ room: RoomState.Room, for user: UserID) {
            self.id = id
            name = room.name
            owner = room.owner
            isPrivate = room.isPrivate
            memberCount = room.members.count
            isMember = room.members.contains(user)
            if let peer = room.directPeer { directWith = user == peer ? room.owner : peer }
            lastRead = room.readMarkers[user]
        }
    }

    /// Who is in a room, as a user may see it: members and who is online; pending invitations
    /// for a private room's owner only.
    struct Roster: Sendable, Equatable {
        var owner: UserID
        var isPrivate: Bool
        var members: [UserID]
        var online: [UserID]
        var invited: [UserID]?
    }

    /// A room's roster as `user` may see it (nil: an anonymous development-mode reader, who
    /// sees public rooms only).
    func roster(of room: RoomID, as user: UserID?) -> Result<Roster, ChatFailure> {
        guard let (info, online) = live.roster(of: room) else { return .failure(ChatFailure(.rule(.roomNotFound), "no room \(room)")) }
        guard user.map(info.mayRead) ?? !info.isPrivate else {
            return .failure(ChatFailure(.rule(.notMember), "only members may list the members of the private room \(room)"))
        }
        return .success(Roster(owner: info.owner, isPrivate: info.isPrivate, members: info.members.sorted(), online: online,
                               invited: info.isPrivate && info.owner == user ? info.invited.sorted() : nil))
    }

    /// The members of a room and who of them is online, sorted (a join's answer).
    func presence(in room: RoomID) -> (members: [UserID], online: [UserID]) {
        guard let (info, online) = live.roster(of: room) else { return ([], []) }
        return (info.members.sorted(), online)
    }

    /// The rooms `user` is a member of (`my-groups`), by id.
    func groups(of user: UserID) -> [RoomSummary] {
        live.rooms { _, room in room.members.contains(user) }.map { RoomSummary($0.id, $0.room, for: user) }
    }

    /// The rooms `user` is a member of with what it has not read in each (`my-groups`):
    /// messages after its read marker that others sent and that are not deleted, and its
    /// mentions among them. Counted in History once it has everything the tailer had applied.
    func inbox(of user: UserID) async -> Result<[RoomSummary], ChatFailure> {
        var rooms = groups(of: user)
        if case .failure(let failure) = await historyWriter.caughtUp(to: live.position) { return .failure(failure) }
        do {
            let counts = try history.unread(of: user.value, in: rooms.map { ($0.id.value, $0.lastRead?.offset) })
            for index in rooms.indices { rooms[index].unread = counts[rooms[index].id.value] }
            return .success(rooms)
        } catch {
            logger.error("unread counts failed", metadata: ["user": "\(user)", "error": "\(error)"])
            return .failure(.unavailable("history is unavailable: \(error)"))
        }
    }

    /// The newest messages with every word of `query` in the rooms `user` is a member of (or in
    /// `room`, which it must be a member of), below `before`, newest first, at most `limit`
    /// (20 by default, `SearchProjection.limitMax` at most). A room's text reaches only its
    /// members: search never looks at a room the user is not in. Read your writes: the index,
    /// which lags while nobody searches (`searchIndexInterval`), and History first hold
    /// everything the tailer had applied when the request came.
    func search(_ query: String, as user: UserID, in room: RoomID?, before: UInt64?, limit: Int?) async
        -> Result<[HistoryMessage], ChatFailure> {
        let size = limit ?? 20
        guard (1...SearchProjection.limitMax).contains(size) else {
            return .failure(.invalid("limit must be 1 to \(SearchProjection.limitMax)"))
        }
        do {
            _ = try SearchProjection.expression(query)
        } catch {
            return .failure(.invalid(error.description))
        }
        var rooms = Set(memberships(of: user).map(\.value))
        if let room {
            guard live.room(room) != nil else { return .failure(ChatFailure(.rule(.roomNotFound), "no room \(room)")) }
            guard rooms.contains(room.value) else {
                return .failure(ChatFailure(.rule(.notMember), "only members search \(room)"))
            }
            rooms = [room.value]
        }
        let position = live.position
        if case .failure(let failure) = await searchWriter.caughtUp(to: position) { return .failure(failure) }
        if case .failure(let failure) = await historyWriter.caughtUp(to: position) { return .failure(failure) }
        do {
            return .success(try history.messages(at: try search.search(query, in: rooms, before: before, limit: size)))
        } catch .invalidQuery(let reason) {
            return .failure(.invalid(reason))
        } catch {
            logger.error("search failed", metadata: ["user": "\(user)", "error": "\(error)"])
            return .failure(.unavailable("search is unavailable: \(error)"))
        }
    }

    /// The rooms `user` may see: every public room and the private ones it is in, by id.
    func rooms(visibleTo user: UserID) -> [RoomSummary] {
        live.rooms { _, room in !room.isPrivate || room.members.contains(user) }.map { RoomSummary($0.id, $0.room, for: user) }
    }

    /// One room as `user` sees it in a list (nil: there is none).
    func room(_ id: RoomID, for user: UserID) -> RoomSummary? {
        live.room(id).map { RoomSummary(id, $0, for: user) }
    }

    /// The rooms `user` is a member of, for connection state recovery.
    func memberships(of user: UserID) -> Set<RoomID> {
        Set(live.rooms { _, room in room.members.contains(user) }.map(\.id))
    }

    /// A page of a room's history as `user` may read it (nil: an anonymous development-mode
    /// reader). Read your writes: History first holds everything the tailer had applied when
    /// the request came, so a client that got its ack, or saw a message, finds it.
    func history(of room: RoomID, as user: UserID?, before: UInt64?, after: UInt64?, limit: Int?) async
        -> Result<[HistoryMessage], ChatFailure> {
        guard let info = live.room(room) else { return .failure(ChatFailure(.rule(.roomNotFound), "no room \(room)")) }
        guard user.map(info.mayRead) ?? !info.isPrivate else {
            return .failure(ChatFailure(.rule(.notMember), "only members may read the history of the private room \(room)"))
        }
        let size = limit ?? limits.historyPageDefault
        let sizeMax = limits.historyPageMax
        guard (1...sizeMax).contains(size) else { return .failure(.invalid("limit must be 1 to \(sizeMax)")) }
        if case .failure(let failure) = await historyWriter.caughtUp(to: live.position) { return .failure(failure) }
        do {
            return .success(try history.page(room: room.value, before: before, after: after, limit: size))
        } catch {
            logger.error("history read failed", metadata: ["room.id": "\(room)", "error": "\(error)"])
            return .failure(.unavailable("history is unavailable: \(error)"))
        }
    }
}
