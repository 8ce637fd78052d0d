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
    /// The latest time the leader may decide the command, in Unix milliseconds by the
    /// standby's clock: half the forward timeout after it was sent. A request that TCP delivers
    /// late (a partition that heals, a leader resumed after a pause) is refused past it, so a
    /// command its standby gave up on, and whose client may have resent it or moved on, is
    /// never applied after the fact.
    var deadlineMs: Int64
    /// The newest leader epoch the standby has seen: a leader older than it is fenced.
    var epoch: UInt32
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
    let journal: Journal
    let logger: Logger
    /// How long a forwarded command may take (its commit may wait for synchronous replicas);
    /// the leader must decide it within the first half (`ForwardedCommand.deadlineMs`).
    let timeout: Duration

    init(follower: ReplicationFollower, journal: Journal, timeout: Duration, logger: Logger) {
        self.follower = follower
        self.journal = journal
        self.timeout = timeout
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
        let half = (timeout / 2).components
        let deadline = ChatGateway.nowMs() + half.seconds * 1000 + half.attoseconds / 1_000_000_000_000_000
        let epoch = max(follower.leaderEpoch, journal.seenEpoch, journal.leaderEpochs.current)
        let body = ForwardedCommand(user: user.value, event: event, payload: payload.serialized(), deadlineMs: deadline, epoch: epoch)
        let reply: Data
        do {
            reply = try await follower.post(ReplicationProtocol.commandPath, json: ReplicationJSON.encoder.encode(body), timeout: timeout)
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

    /// The furthest ahead of the leader's clock a forwarded command's deadline may be: half of
    /// the longest forward timeout (`--forward-timeout`, 10 minutes). Past it, the standby's
    /// clock is so far ahead that a late command could be applied after its standby gave up.
    static let forwardDeadlineAheadMax: Int64 = 300_000

    /// `POST /replication/v1/command` on a leader: a standby's forwarded command.
    func handleForwarded(_ request: Request, leader: ReplicationLeader) async -> Response {
        if let refusal = leader.refusal(of: request, leading: true) { return refusal }
        var request = request
        guard let body = try? await request.collectBody(upTo: 1 << 20),
              let command = try? ReplicationJSON.decoder.decode(ForwardedCommand.self, from: Data(body.readableBytesView)) else {
            return ChatServer.error(.badRequest, "invalid_request", "the body must be {user, event, payload}")
        }
        guard let user = UserID(command.user) else {
            return ChatServer.error(.badRequest, "invalid_request", "user must be 1 to \(UserID.maxBytes) bytes of NFC text without control characters")
        }
        if command.epoch > leader.epoch {
            leader.fence(newerEpoch: command.epoch, reason: "a standby forwarded a command under epoch \(command.epoch)")
            return ChatServer.error(.conflict, "not_leader", "the standby has seen leader epoch \(command.epoch), newer than this node's \(leader.epoch): this node no longer leads")
        }
        let answer: Answer
        var offset: Offset?
        do {
            let payload = try JSONParser.parse(command.payload)
            let parsed = try ChatRequest.parse(command.event, [payload])
            // Checked last, just before the decider takes it: nothing after this waits.
            let nowMs = Self.nowMs()
            if nowMs > command.deadlineMs {
                logger.warning("forwarded command refused: it arrived after its deadline", metadata: [
                    "chat.event": "\(command.event)", "forward.late_ms": "\(nowMs - command.deadlineMs)",
                ])
                answer = .unavailable("the command reached the leader \(nowMs - command.deadlineMs) ms after its deadline and was not applied; send it again")
            } else if command.deadlineMs - nowMs > Self.forwardDeadlineAheadMax {
                logger.error("forwarded command refused: its deadline is too far ahead; are the nodes' clocks set?", metadata: [
                    "chat.event": "\(command.event)", "forward.ahead_ms": "\(command.deadlineMs - nowMs)",
                ])
                answer = .unavailable("the standby's clock is \(command.deadlineMs - nowMs) ms ahead of the command's deadline on the leader: the nodes' clocks disagree (set them with NTP)")
            } else {
                (answer, offset) = await forwarded(parsed, by: user)
            }
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
