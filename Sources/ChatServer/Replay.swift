import ChatModel
import HummingbirdSocketIO
import Journal

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
/// A record that does not decode is the journal's corruption, as for the tailer: the replay
/// fails and the server stops taking commands (`ChatService.failStop`), until a restart.
///
/// A value used by one task.
struct Replay {
    let service: ChatService
    let server: SocketIOServer
    let recovery: Bool

    var live: LiveRooms { service.live }
    var limits: ChatServerLimits { service.limits }

    /// Replays the events of `rooms` from offset `start` (none when nil), then subscribes.
    /// - Returns: the position from which the socket is live (every event of the rooms below
    ///   it was sent), or why it could not be.
    func run(_ socket: SocketRef, rooms: Set<RoomID>, user: UserID?, from start: Offset?) async -> Result<Offset, ChatFailure> {
        // Without a start, the socket is subscribed at the position, read under the lock the
        // tailer applies under: reading it first and subscribing after made a join without
        // `after` replay what the tailer applied in between, before the last_id it reported.
        guard var cursor = start else {
            switch live.subscribe(socket, to: rooms, cursor: nil, server: server) {
            case .subscribed(let position): return .success(position)
            case .gone: return .failure(.unavailable("the socket is disconnected"))
            case .behind: preconditionFailure("a subscription at the position is never behind")
            }
        }
        var reader = service.journal.makeReader()
        while true {
            let target: Offset
            switch live.subscribe(socket, to: rooms, cursor: cursor, server: server) {
            case .subscribed(let position):
                return .success(position)
            case .gone:
                return .failure(.unavailable("the socket is disconnected"))
            case .behind(let position):
                target = position
            }
            var chunk: [EncodedEvent] = []
            while cursor < target {
                let batches: [RecordBatch]
                do {
                    batches = try reader.read(from: cursor, maxBytes: limits.readBytesMax)
                } catch .offsetOutOfRange(_, let earliest, _) {
                    return .failure(ChatFailure(.outOfRange,
                                                "events from \(cursor) on are no longer retained (the journal starts at \(earliest)); load history instead"))
                } catch {
                    return .failure(.unavailable("reading the journal failed: \(error)"))
                }
                guard let end = batches.last?.nextOffset else { break }
                for batch in batches {
                    for record in batch.records where record.offset >= cursor && record.offset < target {
                        let event: ChatEvent
                        do {
                            guard case .event(let decoded) = try ChatEventCodec.decode(record.payload) else { continue }
                            event = decoded
                        } catch {
                            let reason = "the journal holds a malformed event at offset \(record.offset): \(error)"
                            service.failStop(reason, at: record.offset, server: server)
                            return .failure(.unavailable(reason))
                        }
                        guard rooms.contains(event.room) else { continue }
                        // A read marker is its user's own: nobody else's socket gets it.
                        if case .readMarked = event.body, event.actor != user { continue }
                        chunk.append(ChatWire.event(event, at: record.offset, recovery: recovery))
                        if let companion = ChatWire.companion(of: event, at: record.offset, recovery: recovery) { chunk.append(companion) }
                        if chunk.count >= limits.replayChunkEvents {
                            await flush(&chunk, to: socket)
                        }
                        // A user removed from a private room (or who left it), and not a member
                        // again since, gets nothing after that. (A member may read the whole
                        // history of its room, so a leave followed by a rejoin stops nothing.)
                        if let user, event.departedMember == user, let room = live.room(event.room),
                           room.isPrivate, !room.members.contains(user) {
                            await flush(&chunk, to: socket)
                            return .failure(ChatFailure(.rule(.notMember), "\(user) is no longer a member of \(event.room)"))
                        }
                    }
                }
                cursor = min(end, target)
            }
            await flush(&chunk, to: socket)
        }
    }

    private func flush(_ chunk: inout [EncodedEvent], to socket: SocketRef) async {
        guard !chunk.isEmpty else { return }
        for event in chunk { server.send(event, to: CollectionOfOne(socket)) }
        chunk.removeAll(keepingCapacity: true)
        await server.outboundDrained(socket)
    }
}
