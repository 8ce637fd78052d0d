extension RoomState {
    /// An event placed by a `Placer` during replay: a message placed from its record's bytes,
    /// or any other event (or a message whose names needed the full decoding) with its
    /// placement.
    public enum PlacedItem: Sendable {
        case message(PlacedMessage)
        case event(offset: UInt64, ChatEvent, Placement)
    }

    /// Applies `items`, placed in offset order by a `Placer` that followed this state, with
    /// exactly the effect of applying them one by one — but room by room.
    ///
    /// Replay's cost is memory, not arithmetic: each message touches its room's record, the
    /// room's message window and its author's id window, scattered over a state of tens of
    /// megabytes, so one by one nearly every touch misses the cache. Each room's events only
    /// change that room, so they can be applied together, in their own order, while the
    /// room's data is still in the cache. Two things are shared between rooms and are done
    /// first, in offset order: a new author takes the next reference, a new room the next slot.
    public mutating func apply(_ items: [PlacedItem]) {
        // Pass 1, in order: new authors and new rooms; every other item's room slot.
        var slots = [Int32](repeating: -1, count: items.count)
        for position in items.indices {
            switch items[position] {
            case .message(let message):
                if let newAuthor = message.newAuthor { register(newAuthor, as: message.author) }
                slots[position] = message.room
            case .event(let offset, let event, let placement):
                switch event.body {
                case .roomCreated, .directRoomCreated, .tokensRevoked:
                    // Changes nothing unless new (and then the shared direct-room index); about no room.
                    apply(event, at: offset, placement: placement)
                default:
                    if placement.isNewAuthor { register(event.actor, as: placement.author) }
                    slots[position] = placement.room  // -1: a room that does not exist, nothing to do
                }
            }
        }
        // Pass 2: a stable counting sort by room, then each room's items in their order.
        var starts = [Int32](repeating: 0, count: roomList.count + 1)
        for slot in slots where slot >= 0 { starts[Int(slot) + 1] += 1 }
        for room in roomList.indices { starts[room + 1] += starts[room] }
        var order = [Int32](repeating: 0, count: Int(starts[roomList.count]))
        for position in items.indices where slots[position] >= 0 {
            let room = Int(slots[position])
            order[Int(starts[room])] = Int32(position)
            starts[room] += 1
        }
        for position in order {
            switch items[Int(position)] {
            case .message(let message):
                applyMessageToRoom(message)
            case .event(let offset, let event, var placement):
                placement.isNewAuthor = false  // registered in pass 1
                apply(event, at: offset, placement: placement)
            }
        }
    }
}
