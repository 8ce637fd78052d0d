import ChatModel
import Foundation
import Hummingbird
import HummingbirdSocketIO
import Journal
import Logging
import NIOCore
import Replication
import SocketIO

extension ChatRequest {
    /// The event a standby forwards for this request: its name and payload, as a client would
    /// send it (without a username: the forwarding says who speaks). Nil for what is not
    /// forwarded (reads, typing).
    var forwarded: (event: String, payload: JSONValue)? {
        func object(_ room: RoomID, _ fields: [(String, JSONValue)]) -> JSONValue {
            .object([("group", .string(room.value))] + fields)
        }
        switch self {
        case .join(let room, _, _): return ("join-group", object(room, []))
        case .leave(let room, _): return ("leave-group", object(room, []))
        case .send(let room, let text, let created, let createdText, _, let clientID):
            var fields: [(String, JSONValue)] = [("message", .string(text)),
                                                 ("created", createdText.map(JSONValue.string) ?? .number(Double(created)))]
            if let clientID { fields.append(("client_id", .string(clientID))) }
            return ("send-group-message", object(room, fields))
        case .create(let room, let isPrivate, let name):
            return ("create-group", object(room, [("private", .bool(isPrivate))] + (name.map { [("name", .string($0))] } ?? [])))
        case .invite(let room, let user): return ("invite", object(room, [("username", .string(user.value))]))
        case .revokeInvite(let room, let user): return ("revoke-invite", object(room, [("username", .string(user.value))]))
        case .remove(let room, let user): return ("remove-member", object(room, [("username", .string(user.value))]))
        case .edit(let room, let message, let text):
            return ("edit-message", object(room, [("id", .number(Double(message.offset))), ("message", .string(text))]))
        case .delete(let room, let message): return ("delete-message", object(room, [("id", .number(Double(message.offset)))]))
        case .typing, .members, .myGroups, .history: return nil
        }
    }
}

/// A forwarded command on the wire (`POST /replication/v1/command`, FORMAT.md §11).
struct ForwardedCommand: Codable {
    var user: String
    var event: String
    /// The event's payload, JSON text.
    var payload: String
}

/// The leader's answer: the ack the client gets, as JSON text, and the offset of the
/// command's last event when it appended one.
struct ForwardedAnswer: Codable {
    var ack: String
    var offset: UInt64?
}

/// A standby's way to its leader for the commands its clients send (not with `--read-only`):
/// the leader decides each as the standby's user, waits for its commit, and answers with the
/// ack the client then gets. The standby learns of the events by copying them, as of any.
final class Forwarder: Sendable {
    let follower: ReplicationFollower
    let logger: Logger
    /// How long a forwarded command may take (its commit may wait for synchronous replicas).
    static let timeout: Duration = .seconds(30)

    init(follower: ReplicationFollower, logger: Logger) {
        self.follower = follower
        self.logger = logger
    }

    struct Outcome {
        var answer: ChatGateway.Answer
        /// The last offset the command appended on the leader, when it did.
        var offset: Offset?
    }

    func forward(_ request: ChatRequest, by user: UserID) async -> Outcome {
        guard let (event, payload) = request.forwarded else {
            return Outcome(answer: .invalid("\(request) is not forwarded"))
        }
        let body = ForwardedCommand(user: user.value, event: event, payload: payload.serialized())
        let reply: Data
        do {
            reply = try await follower.post(ReplicationProtocol.commandPath, json: ReplicationJSON.encoder.encode(body), timeout: Self.timeout)
        } catch {
            logger.warning("forwarding to the leader failed", metadata: ["chat.event": "\(event)", "error": "\(error)"])
            return Outcome(answer: .unavailable("the leader could not be reached: \(error)"))
        }
        guard let answer = try? ReplicationJSON.decoder.decode(ForwardedAnswer.self, from: reply),
              let ack = try? JSONParser.parse(answer.ack), let ok = ack["ok"] else {
            return Outcome(answer: .unavailable("the leader's answer could not be read"))
        }
        if ok == .bool(true), case .object(let fields) = ack {
            return Outcome(answer: .ok(fields.filter { $0.0 != "ok" }), offset: answer.offset.map(Offset.init))
        }
        let code = ack["error"]?["code"]?.stringValue ?? "unavailable"
        let message = ack["error"]?["message"]?.stringValue ?? "the leader refused the command"
        return Outcome(answer: .failed(code: code, message: message))
    }
}

extension ChatGateway {
    /// A command a standby forwarded, carried out here as `user`: decided, appended, answered
    /// once committed, as a socket's command is; joins and leaves change only the membership
    /// (the standby handles its socket's subscription).
    func forwarded(_ request: ChatRequest, by user: UserID) async -> (Answer, Offset?) {
        let nowMs = Self.nowMs()
        var last: Offset?
        func tracking(_ fields: @escaping (OffsetRange?) -> [(String, JSONValue)]) -> (OffsetRange?) -> [(String, JSONValue)] {
            { range in
                last = range?.last
                return fields(range)
            }
        }
        switch request {
        case .send(let room, let text, let created, let createdText, _, let clientID):
            let clientMessageID = clientID ?? ChatWire.generatedClientIDPrefix + SocketIOServer.randomID()
            let command = ChatCommand.send(room, clientMessageID: clientMessageID, text: text, clientCreatedMs: created,
                                           clientCreatedText: createdText)
            let answer = await decideAndWait(command, by: user, nowMs: nowMs, fields: tracking { range in
                range.map { [("id", .number(Double($0.first.value)))] } ?? []
            })
            return (answer, last)
        case .join(let room, _, _):
            switch decider.join(room, by: user, createIfMissing: true, nowMs: nowMs) {
            case .appended(let range):
                switch await live.applied(range.last) {
                case .success: return (.ok([("group", .string(room.value))]), range.last)
                case .failure(.unavailable(let reason)): return (.unavailable(reason), nil)
                }
            case .unchanged:
                let next = decider.nextOffset
                if next.value > 0, case .failure(.unavailable(let reason)) = await live.applied(Offset(next.value - 1)) {
                    return (.unavailable(reason), nil)
                }
                return (.ok([("group", .string(room.value))]), next.value > 0 ? Offset(next.value - 1) : nil)
            case .rejected(let rejection): return (.rejected(rejection), nil)
            case .refused(let code, let message): return (.failed(code: code, message: message), nil)
            case .unavailable(let reason): return (.unavailable(reason), nil)
            case .duplicate: preconditionFailure("joining is never a duplicate")
            }
        case .leave(let room, _):
            let answer = await decideAndWait(.leave(room), by: user, nowMs: nowMs, fields: tracking { _ in [("group", .string(room.value))] })
            return (answer, last)
        case .create, .invite, .revokeInvite, .remove, .edit, .delete:
            guard let (command, fields) = Self.roomCommand(request) else { preconditionFailure("\(request) is a room command") }
            let answer = await decideAndWait(command, by: user, nowMs: nowMs, fields: tracking(fields))
            return (answer, last)
        case .typing, .members, .myGroups, .history:
            return (.invalid("\(request) is not a command a standby forwards"), nil)
        }
    }

    /// `POST /replication/v1/command` on a leader: a standby's forwarded command.
    func handleForwarded(_ request: Request, leader: ReplicationLeader) async -> Response {
        if let refusal = leader.refusal(of: request, leading: true) { return refusal }
        var request = request
        guard let body = try? await request.collectBody(upTo: 1 << 20),
              let command = try? ReplicationJSON.decoder.decode(ForwardedCommand.self, from: Data(body.readableBytesView)) else {
            return ChatServer.error(.badRequest, "invalid_request", "the body must be {user, event, payload}")
        }
        guard let user = UserID(command.user) else {
            return ChatServer.error(.badRequest, "invalid_request", "user must be 1 to \(UserID.maxBytes) bytes without control characters")
        }
        let answer: Answer
        var offset: Offset?
        do {
            let payload = try JSONParser.parse(command.payload)
            let parsed = try ChatRequest.parse(command.event, [payload])
            (answer, offset) = await forwarded(parsed, by: user)
        } catch let error as PayloadError {
            answer = .invalid(error.message)
        } catch {
            answer = .invalid("the payload is not JSON: \(error)")
        }
        let ack: JSONValue = switch answer {
        case .ok(let fields): ChatWire.success(fields)
        case .failed(let code, let message): ChatWire.failure(code: code, message: message)
        case .none, .later: ChatWire.success([])
        }
        return ChatServer.json(ForwardedAnswer(ack: ack.serialized(), offset: offset?.value))
    }
}
