import ChatModel
import HummingbirdSocketIO
import Journal
import SocketIO

/// A socket's way into a room: the room's events it missed, read from the journal, then live.
///
/// Replay and live delivery share one path, the journal: the replay reads the room's events
/// from the socket's cursor up to the tailer's position, and the socket joins the room's live
/// subscribers only when its cursor has reached that position, under the lock under which
/// the tailer fans out (`LiveRooms.subscribe`). So the splice has no gap and no duplicate,
/// however many events are sent meanwhile, and after a restart as well as after a second.
/// Events go out `replayChunkEvents` at a time, each chunk once the previous one has left
/// the server, so a replay of any length fits the bounded outbound queue.
///
/// A value used by one task.
struct Replay {
    let journal: Journal
    let live: LiveRooms
    let server: SocketIOServer
    let limits: ChatServerLimits
    let recovery: Bool

    enum Outcome {
        /// Live from `position` on (every event of the rooms below it was sent).
        case subscribed(position: Offset)
        case failed(code: String, message: String)
    }

    /// Replays the events of `rooms` from offset `start` (none when nil), then subscribes.
    func run(_ socket: SocketRef, rooms: Set<RoomID>, user: UserID?, from start: Offset?) async -> Outcome {
        // Without a start, the socket is subscribed at the position, read under the lock the
        // tailer applies under: reading it first and subscribing after made a join without
        // `after` replay what the tailer applied in between, before the last_id it reported.
        guard var cursor = start else {
            switch live.subscribe(socket, to: rooms, cursor: nil, recovery: recovery, server: server) {
            case .subscribed(let position): return .subscribed(position: position)
            case .gone: return .failed(code: "unavailable", message: "the socket is disconnected")
            case .behind: preconditionFailure("a subscription at the position is never behind")
            }
        }
        var reader = journal.makeReader()
        while true {
            let target: Offset
            switch live.subscribe(socket, to: rooms, cursor: cursor, recovery: recovery, server: server) {
            case .subscribed(let position):
                return .subscribed(position: position)
            case .gone:
                return .failed(code: "unavailable", message: "the socket is disconnected")
            case .behind(let position):
                target = position
            }
            var chunk: [EnginePacket] = []
            while cursor < target {
                let batches: [RecordBatch]
                do {
                    batches = try reader.read(from: cursor, maxBytes: limits.readBytesMax)
                } catch .offsetOutOfRange(_, let earliest, _) {
                    return .failed(code: "out_of_range",
                                   message: "events from \(cursor) on are no longer retained (the journal starts at \(earliest)); load history instead")
                } catch {
                    return .failed(code: "unavailable", message: "reading the journal failed: \(error)")
                }
                guard let end = batches.last?.nextOffset else { break }
                for batch in batches {
                    for record in batch.records where record.offset >= cursor && record.offset < target {
                        guard case .event(let event)? = try? ChatEventCodec.decode(record.payload), rooms.contains(event.room) else { continue }
                        chunk.append(ChatWire.packet(for: event, at: record.offset, recovery: recovery))
                        if chunk.count >= limits.replayChunkEvents {
                            await flush(&chunk, to: socket)
                        }
                        // A user removed from a private room (or who left it), and not a member
                        // again since, gets nothing after that. (A member may read the whole
                        // history of its room, so a leave followed by a rejoin stops nothing.)
                        if let user, event.departedMember == user, live.state.withLock({ state in
                            guard let room = state.rooms.room(event.room) else { return false }
                            return room.isPrivate && !room.members.contains(user)
                        }) {
                            await flush(&chunk, to: socket)
                            return .failed(code: "not_member", message: "\(user) is no longer a member of \(event.room)")
                        }
                    }
                }
                cursor = min(end, target)
            }
            await flush(&chunk, to: socket)
        }
    }

    private func flush(_ chunk: inout [EnginePacket], to socket: SocketRef) async {
        guard !chunk.isEmpty else { return }
        for packet in chunk { server.send(packet, to: CollectionOfOne(socket)) }
        chunk.removeAll(keepingCapacity: true)
        await server.outboundDrained(socket)
    }
}
