import ChatModel
import Foundation
import Journal
import Logging
import NIOCore

@testable import Projections

struct TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "chatlog-projections-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
    var journal: String { path + "/journal" }
}

extension Logger {
    static let quiet: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()
}

func journalConfiguration() -> JournalConfiguration {
    var configuration = JournalConfiguration()
    configuration.durability = .none
    configuration.batchBytesMax = 64 << 10
    configuration.batchBytesTarget = 16 << 10
    configuration.recordBytesMax = 32 << 10
    configuration.segmentBytesMax = 256 << 10
    return configuration
}

/// A deterministic random workload of chat commands, decided against the state as it goes,
/// so every event it appends is one the rules accept.
struct Workload {
    var state = RoomState()
    var generator: UInt64
    var now: Int64 = 1_795_000_000_000
    let users = (0..<12).map { UserID("user\($0)")! }
    let rooms = (0..<6).map { RoomID("room\($0)")! }
    var sent: [(RoomID, MessageID, UserID)] = []

    init(seed: UInt64) { generator = seed }

    mutating func random(_ bound: Int) -> Int {
        generator = generator &* 6364136223846793005 &+ 1442695040888963407
        return Int((generator >> 33) % UInt64(bound))
    }

    mutating func nextCommand() -> (ChatCommand, UserID) {
        let actor = users[random(users.count)]
        let room = rooms[random(rooms.count)]
        switch random(20) {
        case 0: return (.createRoom(room, name: "Room \(room)", isPrivate: random(2) == 0), actor)
        case 1: return (.invite(room, user: users[random(users.count)]), state.room(room)?.owner ?? actor)
        case 2: return (.join(room), actor)
        case 3: return (.leave(room), actor)
        case 4: return (.remove(room, user: users[random(users.count)]), state.room(room)?.owner ?? actor)
        case 5 where !sent.isEmpty:
            let (room, message, author) = sent[random(sent.count)]
            return (.edit(room, message: message, text: "edited \(random(1000))"), author)
        case 6 where !sent.isEmpty:
            let (room, message, author) = sent[random(sent.count)]
            return (.delete(room, message: message), random(2) == 0 ? author : (state.room(room)?.owner ?? author))
        case 7 where !sent.isEmpty:
            let (room, message, _) = sent[sent.count - 1 - random(min(sent.count, 8))]
            let emoji = ["👍", "🎉", "ok"][random(3)]
            return (random(3) == 0 ? .unreact(room, message: message, emoji: emoji) : .react(room, message: message, emoji: emoji), actor)
        case 8 where !sent.isEmpty:
            let (room, message, _) = sent[sent.count - 1 - random(min(sent.count, 8))]
            return (.markRead(room, message: message), actor)
        case 9:
            return (.openDirect(peer: users[random(users.count)]), actor)
        case 10 where !sent.isEmpty:
            let (room, message, _) = sent[sent.count - 1 - random(min(sent.count, 8))]
            return (.send(room, clientMessageID: "r\(random(40))", text: "re @\(users[random(users.count)])", clientCreatedMs: now - 5,
                          replyTo: message), actor)
        default:
            // Retries reuse a recent client id now and then.
            return (.send(room, clientMessageID: "c\(random(40))", text: "hello \(random(100_000)) from \(actor)", clientCreatedMs: now - 5), actor)
        }
    }

    /// Appends `count` accepted events to `journal`, `perAppend` commands per append.
    mutating func append(_ count: Int, to journal: Journal) async throws {
        var appended = 0
        while appended < count {
            now += 7
            let (command, actor) = nextCommand()
            guard case .accepted(let events) = state.decide(command, by: actor, at: now), !events.isEmpty else { continue }
            let range = try await journal.append(contentsOf: events.map(ChatEventCodec.encode))
            for (index, event) in events.enumerated() {
                let offset = range.first.value + UInt64(index)
                state.apply(event, at: offset)
                if case .messageSent = event.body { sent.append((event.room, MessageID(offset), event.actor)) }
            }
            appended += events.count
        }
    }
}
