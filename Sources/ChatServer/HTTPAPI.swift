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
        let performed = try await perform(.send(room, text: body.message, createdMs: body.created ?? ChatService.nowMs(),
                                                createdText: nil, clientID: body.clientId), by: user)
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
            edited: message.editedMs == nil ? nil : true, deleted: message.deletedMs == nil ? nil : true)
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
