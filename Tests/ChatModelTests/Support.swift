@testable import ChatModel

func user(_ name: String) -> UserID {
    guard let id = UserID(name) else { preconditionFailure("test user \(name) is valid") }
    return id
}

func room(_ name: String) -> RoomID {
    guard let id = RoomID(name) else { preconditionFailure("test room \(name) is valid") }
    return id
}

/// An identifier as an older journal may hold it, in a form new commands are refused in (not
/// NFC): replay takes such events as they are.
func journaled(user name: String) -> UserID { UserID(unchecked: name) }
func journaled(room name: String) -> RoomID { RoomID(unchecked: name) }

let alice = user("alice")
let bob = user("bob")
let carol = user("carol")
let general = room("general")
let secret = room("secret")

/// Decides and, when accepted, applies the events at consecutive offsets.
struct Harness {
    var state = RoomState(limits: {
        var limits = ChatLimits()
        limits.clientMessageIDWindow = 3
        limits.editableMessagesPerRoom = 4
        return limits
    }())
    var nextOffset: UInt64 = 0
    var now: Int64 = 1_000

    @discardableResult
    mutating func run(_ command: ChatCommand, by actor: UserID) -> Decision {
        now += 1
        let decision = state.decide(command, by: actor, at: now)
        if case .accepted(let events) = decision {
            for event in events {
                state.apply(event, at: nextOffset)
                nextOffset += 1
            }
        }
        return decision
    }

    /// Runs a command that must be accepted; returns the offset of its (single) event.
    @discardableResult
    mutating func must(_ command: ChatCommand, by actor: UserID) -> UInt64 {
        let offset = nextOffset
        let decision = run(command, by: actor)
        guard case .accepted = decision else { preconditionFailure("\(command) by \(actor) was \(decision)") }
        return offset
    }

    func code(of decision: Decision) -> Rejection.Code? {
        if case .rejected(let rejection) = decision { return rejection.code }
        return nil
    }
}
