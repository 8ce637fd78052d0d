import ChatModel
import Foundation
import Hummingbird
import Journal
import Logging
import Replication
import SocketIO

/// `POST /replication/v1/command` on a leader: the adapter for the commands standbys forward
/// (FORMAT.md §11). It checks the replication secret, the deadline and the epoch, parses the
/// event as a socket's, has the `ChatService` carry it out as the standby's user (here, never
/// forwarded on), and answers with the ack the client gets and the offset of what it appended.
struct ForwardedCommands: Sendable {
    let service: ChatService
    let leader: ReplicationLeader
    let logger: Logger

    /// The furthest ahead of the leader's clock a forwarded command's deadline may be: half of
    /// the longest forward timeout (`--forward-timeout`, 10 minutes). Past it, the standby's
    /// clock is so far ahead that a late command could be applied after its standby gave up.
    static let deadlineAheadMax: Int64 = 300_000

    /// The largest forwarded command the leader reads.
    static let bodyBytesMax = 1 << 20

    func handle(_ request: Request) async -> Response {
        if let refusal = leader.refusal(of: request, leading: true) { return refusal }
        var request = request
        guard let body = try? await request.collectBody(upTo: Self.bodyBytesMax),
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
        let (ack, offset) = await perform(command, as: user)
        return ChatServer.json(ForwardedAnswer(ack: ack.serialized(), offset: offset?.value))
    }

    /// The ack for a forwarded command, and the offset the standby waits for.
    private func perform(_ forwarded: ForwardedCommand, as user: UserID) async -> (JSONValue, Offset?) {
        let command: ChatService.Command
        do {
            let payload = try JSONParser.parse(forwarded.payload)
            guard let parsed = try ChatRequest.parse(forwarded.event, [payload], fromStandby: true).command else {
                return (ChatWire.failure(.invalid("\(forwarded.event) is not a command a standby forwards")), nil)
            }
            command = parsed
        } catch let error as PayloadError {
            return (ChatWire.failure(.invalid(error.message)), nil)
        } catch {
            return (ChatWire.failure(.invalid("the payload is not JSON: \(error)")), nil)
        }
        // Checked last, just before the decider takes it: nothing after this waits.
        let nowMs = ChatService.nowMs()
        if nowMs > forwarded.deadlineMs {
            logger.warning("forwarded command refused: it arrived after its deadline", metadata: [
                "chat.event": "\(forwarded.event)", "forward.late_ms": "\(nowMs - forwarded.deadlineMs)",
            ])
            return (ChatWire.failure(.unavailable("the command reached the leader \(nowMs - forwarded.deadlineMs) ms after its deadline and was not applied; send it again")), nil)
        }
        if forwarded.deadlineMs - nowMs > Self.deadlineAheadMax {
            logger.error("forwarded command refused: its deadline is too far ahead; are the nodes' clocks set?", metadata: [
                "chat.event": "\(forwarded.event)", "forward.ahead_ms": "\(forwarded.deadlineMs - nowMs)",
            ])
            return (ChatWire.failure(.unavailable("the standby's clock is \(forwarded.deadlineMs - nowMs) ms ahead of the command's deadline on the leader: the nodes' clocks disagree (set them with NTP)")), nil)
        }
        switch await service.perform(command, as: user, nowMs: nowMs, forwarding: false) {
        case .success(let performed):
            return (ChatWire.success(ChatWire.ackFields(of: command, performed)), performed.last)
        case .failure(let failure):
            return (ChatWire.failure(failure), nil)
        }
    }
}
