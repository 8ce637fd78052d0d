import ChatAPI
import ChatModel
import Foundation
import Projections

/// The HTTP API (`/api/rooms…`), for bots, dashboards and integrations: the routes and types
/// are generated from `Sources/ChatAPI/openapi.yaml` (tools/generate-openapi.sh), so the
/// document and the server cannot drift; this type is the `ChatService`'s HTTP adapter.
///
/// Every operation goes the socket events' way, under their rules: reads from the room state
/// and History as the tailer applied them, commands carried out by the service (decided here
/// or by the leader, answered once committed and applied here), so a posted message is
/// broadcast to the room's sockets like any. Who calls comes from `APIGuard`, which also rate-
/// limits and bounds the body; refusals are thrown as `ChatFailure`s and rendered by it.
/// Thread-safe: immutable, over the service.
struct ChatHTTPAPI: APIProtocol {
    let service: ChatService

    /// The caller, as `APIGuard` identified it for this request.
    @TaskLocal static var caller: UserID?

    func caller() throws(ChatFailure) -> UserID {
        guard let user = Self.caller else { throw .unauthorized("no caller") }
        return user
    }

    // MARK: Rooms

    func listRooms(_ input: Operations.ListRooms.Input) async throws -> Operations.ListRooms.Output {
        let user = try caller()
        return .ok(.init(body: .json(.init(rooms: service.rooms(visibleTo: user).map(Self.room)))))
    }

    func createRoom(_ input: Operations.CreateRoom.Input) async throws -> Operations.CreateRoom.Output {
        let user = try caller()
        guard case .json(let body) = input.body else { throw ChatFailure.invalid("the body must be JSON") }
        let room = try Self.room(body.group)
        try await perform(.create(room, isPrivate: body._private ?? false, name: body.name), by: user)
        guard let created = service.room(room, for: user) else { throw ChatFailure.unavailable("the room \(room) is not applied yet; retry") }
        return .created(.init(body: .json(Self.room(created))))
    }

    static func room(_ room: ChatService.RoomSummary) -> Components.Schemas.Room {
        Components.Schemas.Room(group: room.id.value, name: room.name, _private: room.isPrivate, owner: room.owner.value,
                                members: room.memberCount, member: room.isMember)
    }

    // MARK: Messages

    func listMessages(_ input: Operations.ListMessages.Input) async throws -> Operations.ListMessages.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        let query = input.query
        guard query.before.map({ $0 >= 0 }) ?? true, query.after.map({ $0 >= 0 }) ?? true else {
            throw ChatFailure.invalid("before and after are message ids, 0 or more")
        }
        let messages = try await service.history(of: room, as: user, before: query.before.map(UInt64.init),
                                                 after: query.after.map(UInt64.init), limit: query.limit).get()
        return .ok(.init(body: .json(.init(group: room.value, messages: messages.map(Self.message)))))
    }

    func postMessage(_ input: Operations.PostMessage.Input) async throws -> Operations.PostMessage.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        guard case .json(let body) = input.body else { throw ChatFailure.invalid("the body must be JSON") }
        do {
            try ChatRequest.checkClientID(body.clientId)
        } catch {
            throw ChatFailure.invalid(error.message)
        }
        guard body.replyTo.map({ $0 >= 0 }) ?? true else { throw ChatFailure.invalid("reply_to is a message id, 0 or more") }
        let performed = try await perform(.send(room, text: body.message, createdMs: body.created ?? ChatService.nowMs(),
                                                createdText: nil, clientID: body.clientId,
                                                replyTo: body.replyTo.map { MessageID(UInt64($0)) }), by: user)
        guard let id = performed.messageID, let offset = Int64(exactly: id.value) else {
            throw ChatFailure.unavailable("the leader did not say which id the message took")
        }
        return .created(.init(body: .json(.init(group: room.value, id: offset, clientId: body.clientId))))
    }

    static func message(_ message: HistoryMessage) -> Components.Schemas.Message {
        Components.Schemas.Message(
            group: message.room, message: message.text, username: message.author,
            created: message.clientCreatedText.map { .case2($0) } ?? .case1(message.clientCreatedMs),
            id: Int64(message.offset),
            clientId: ClientMessageIDs.mayBeSentByClients(message.clientMessageID) ? message.clientMessageID : nil,
            replyTo: message.replyTo.map { Int64($0) },
            edited: message.editedMs == nil ? nil : true, deleted: message.deletedMs == nil ? nil : true,
            reactions: message.reactions.isEmpty ? nil : .init(additionalProperties: Dictionary(
                message.reactions.map { ($0.emoji, $0.users) }, uniquingKeysWith: { first, _ in first })))
    }

    func addReaction(_ input: Operations.AddReaction.Input) async throws -> Operations.AddReaction.Output {
        let user = try caller()
        let (room, message) = try Self.message(input.path.group, input.path.id)
        try await perform(.react(room, message, emoji: input.path.emoji), by: user)
        return .noContent(.init())
    }

    func removeReaction(_ input: Operations.RemoveReaction.Input) async throws -> Operations.RemoveReaction.Output {
        let user = try caller()
        let (room, message) = try Self.message(input.path.group, input.path.id)
        try await perform(.unreact(room, message, emoji: input.path.emoji), by: user)
        return .noContent(.init())
    }

    func markRead(_ input: Operations.MarkRead.Input) async throws -> Operations.MarkRead.Output {
        let user = try caller()
        guard case .json(let body) = input.body else { throw ChatFailure.invalid("the body must be JSON") }
        let (room, message) = try Self.message(input.path.group, body.id)
        try await perform(.markRead(room, message), by: user)
        return .noContent(.init())
    }

    static func message(_ group: String, _ id: Int64) throws(ChatFailure) -> (RoomID, MessageID) {
        guard id >= 0 else { throw .invalid("id is a message id, 0 or more") }
        return (try room(group), MessageID(UInt64(id)))
    }

    func search(_ input: Operations.Search.Input) async throws -> Operations.Search.Output {
        let user = try caller()
        let query = input.query
        guard query.before.map({ $0 >= 0 }) ?? true else { throw ChatFailure.invalid("before is a message id, 0 or more") }
        let room = try query.group.map { value throws(ChatFailure) in try Self.room(value) }
        let found = try await service.search(query.q, as: user, in: room, before: query.before.map(UInt64.init), limit: query.limit).get()
        return .ok(.init(body: .json(.init(messages: found.map(Self.message)))))
    }

    // MARK: The caller's rooms

    func listMyRooms(_ input: Operations.ListMyRooms.Input) async throws -> Operations.ListMyRooms.Output {
        let user = try caller()
        let rooms = try await service.inbox(of: user).get().map { room in
            Components.Schemas.MyRoom(
                group: room.id.value, name: room.directWith?.value ?? room.name, _private: room.isPrivate, owner: room.owner.value,
                members: room.memberCount, direct: room.directWith != nil, with: room.directWith?.value,
                lastRead: room.lastRead.map { Int64($0.offset) }, unread: room.unread?.messages ?? 0, mentions: room.unread?.mentions ?? 0)
        }
        return .ok(.init(body: .json(.init(rooms: rooms))))
    }

    func openDirect(_ input: Operations.OpenDirect.Input) async throws -> Operations.OpenDirect.Output {
        let user = try caller()
        guard case .json(let body) = input.body else { throw ChatFailure.invalid("the body must be JSON") }
        let peer = try Self.user(body.username)
        guard let room = try await perform(.openDirect(peer), by: user).room else {
            throw ChatFailure.unavailable("the leader did not say which room it opened")
        }
        return .ok(.init(body: .json(.init(group: room.value, with: peer.value))))
    }

    // MARK: Members

    func listMembers(_ input: Operations.ListMembers.Input) async throws -> Operations.ListMembers.Output {
        let user = try caller()
        return .ok(.init(body: .json(try members(of: try Self.room(input.path.group), as: user))))
    }

    func joinRoom(_ input: Operations.JoinRoom.Input) async throws -> Operations.JoinRoom.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        // Unlike `join-group`, joining does not create a missing room (POST /api/rooms does).
        guard service.room(room, for: user) != nil else { throw ChatFailure(.rule(.roomNotFound), "no room \(room)") }
        try await perform(.join(room, createIfMissing: false), by: user)
        return .ok(.init(body: .json(try members(of: room, as: user))))
    }

    func removeMember(_ input: Operations.RemoveMember.Input) async throws -> Operations.RemoveMember.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        let member = try Self.user(input.path.username)
        try await perform(member == user ? .leave(room) : .remove(room, member), by: user)
        return .noContent(.init())
    }

    func invite(_ input: Operations.Invite.Input) async throws -> Operations.Invite.Output {
        let user = try caller()
        let room = try Self.room(input.path.group)
        guard case .json(let body) = input.body else { throw ChatFailure.invalid("the body must be JSON") }
        let invitee = try Self.user(body.username)
        try await perform(.invite(room, invitee), by: user)
        return .created(.init(body: .json(.init(group: room.value, username: invitee.value))))
    }

    func members(of room: RoomID, as user: UserID) throws(ChatFailure) -> Components.Schemas.Members {
        let roster = try service.roster(of: room, as: user).get()
        return .init(group: room.value, owner: roster.owner.value, _private: roster.isPrivate,
                     members: roster.members.map(\.value), online: roster.online.map(\.value),
                     invited: roster.invited?.map(\.value))
    }

    // MARK: Commands

    /// Carries a command out as `user`, as a socket's would be.
    @discardableResult
    func perform(_ command: ChatService.Command, by user: UserID) async throws(ChatFailure) -> ChatService.Performed {
        try await service.perform(command, as: user).get()
    }

    static func room(_ value: String) throws(ChatFailure) -> RoomID {
        guard let room = RoomID(value) else {
            throw .invalid("group must be 1 to \(RoomID.maxBytes) bytes of UTF-8 in NFC without control characters")
        }
        return room
    }

    static func user(_ value: String) throws(ChatFailure) -> UserID {
        guard let user = UserID(value) else {
            throw .invalid("username must be 1 to \(UserID.maxBytes) bytes of UTF-8 in NFC without control characters")
        }
        return user
    }
}
