import ChatModel
import Foundation
import Journal
import Logging
import Replication
import SocketIO

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

extension ChatService.Command {
    /// The event a standby forwards for this command: its name and payload, as a client would
    /// send it (without a username: the forwarding says who speaks).
    var forwarded: (event: String, payload: JSONValue) {
        func object(_ room: RoomID, _ fields: [(String, JSONValue)]) -> JSONValue {
            .object([("group", .string(room.value))] + fields)
        }
        switch self {
        case .join(let room, _): return ("join-group", object(room, []))
        case .leave(let room): return ("leave-group", object(room, []))
        case .send(let room, let text, let created, let createdText, let clientID, let replyTo):
            var fields: [(String, JSONValue)] = [("message", .string(text)),
                                                 ("created", createdText.map(JSONValue.string) ?? .number(Double(created)))]
            if let clientID { fields.append(("client_id", .string(clientID))) }
            if let replyTo { fields.append(("reply_to", .number(Double(replyTo.offset)))) }
            return ("send-group-message", object(room, fields))
        case .create(let room, let isPrivate, let name):
            return ("create-group", object(room, [("private", .bool(isPrivate))] + (name.map { [("name", .string($0))] } ?? [])))
        case .invite(let room, let user): return ("invite", object(room, [("username", .string(user.value))]))
        case .revokeInvite(let room, let user): return ("revoke-invite", object(room, [("username", .string(user.value))]))
        case .remove(let room, let user): return ("remove-member", object(room, [("username", .string(user.value))]))
        case .edit(let room, let message, let text):
            return ("edit-message", object(room, [("id", .number(Double(message.offset))), ("message", .string(text))]))
        case .delete(let room, let message): return ("delete-message", object(room, [("id", .number(Double(message.offset)))]))
        case .openDirect(let peer): return ("open-direct", .object([("username", .string(peer.value))]))
        case .react(let room, let message, let emoji):
            return ("react", object(room, [("id", .number(Double(message.offset))), ("emoji", .string(emoji))]))
        case .unreact(let room, let message, let emoji):
            return ("unreact", object(room, [("id", .number(Double(message.offset))), ("emoji", .string(emoji))]))
        case .markRead(let room, let message): return ("mark-read", object(room, [("id", .number(Double(message.offset)))]))
        }
    }
}

/// A standby's way to its leader for the commands its clients send (not with `--read-only`):
/// the leader decides each as the standby's user, waits for its commit, and answers with the
/// ack the client would get there. The standby learns of the events by copying them, as of any.
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

    /// Has the leader carry `command` out as `user`. `Performed.last` is the leader's offset of
    /// what it appended, which the caller waits for this standby to apply.
    func forward(_ command: ChatService.Command, by user: UserID) async -> Result<ChatService.Performed, ChatFailure> {
        let (event, payload) = command.forwarded
        let half = (timeout / 2).components
        let deadline = ChatService.nowMs() + half.seconds * 1000 + half.attoseconds / 1_000_000_000_000_000
        let epoch = max(follower.leaderEpoch, journal.seenEpoch, journal.leaderEpochs.current)
        let body = ForwardedCommand(user: user.value, event: event, payload: payload.serialized(), deadlineMs: deadline, epoch: epoch)
        let reply: Data
        do {
            reply = try await follower.post(ReplicationProtocol.commandPath, json: ReplicationJSON.encoder.encode(body), timeout: timeout)
        } catch {
            logger.warning("forwarding to the leader failed", metadata: ["chat.event": "\(event)", "error": "\(error)"])
            return .failure(.unavailable("the leader could not be reached: \(error)"))
        }
        guard let answer = try? ReplicationJSON.decoder.decode(ForwardedAnswer.self, from: reply),
              let ack = try? JSONParser.parse(answer.ack), let ok = ack["ok"] else {
            return .failure(.unavailable("the leader's answer could not be read"))
        }
        guard ok == .bool(true) else {
            return .failure(ChatFailure(reportedCode: ack["error"]?["code"]?.stringValue ?? "unavailable",
                                        message: ack["error"]?["message"]?.stringValue ?? "the leader refused the command"))
        }
        let id: Offset? = if case .number(let number) = ack["id"], let value = UInt64(exactly: number) { Offset(value) } else { nil }
        let room: RoomID? = if case .string(let group) = ack["group"], case .openDirect = command { RoomID(group) } else { nil }
        return .success(ChatService.Performed(last: answer.offset.map(Offset.init), messageID: id, room: room))
    }
}
