/// The room rules' limits. Each bounds memory or abuse; `validate()` checks them at start-up.
public struct ChatLimits: Sendable, Equatable {
    /// Longest message text, in UTF-8 bytes.
    public var messageBytesMax = 4096
    /// Longest room display name, in UTF-8 bytes.
    public var roomNameBytesMax = 128
    /// Longest client message id, in UTF-8 bytes.
    public var clientMessageIDBytesMax = 64
    /// The idempotency window: how many client message ids are remembered per user and room.
    /// A retry of a send is recognised as a duplicate while its id is among the sender's last
    /// `clientMessageIDWindow` ids in that room. Kept in the room-state snapshot.
    public var clientMessageIDWindow = 32
    /// The idempotency windows one room keeps: at most this many senders' windows. A new
    /// sender beyond it takes the place of the sender whose last message in the room is the
    /// oldest (whose retries then count as new messages). Bounds a room's state whatever the
    /// number of distinct senders. Kept in the room-state snapshot.
    public var clientIDSendersPerRoomMax = 1_000
    /// The edit window: only a room's last `editableMessagesPerRoom` messages can be edited or
    /// deleted. Bounds the room state's memory per room; older messages are history only.
    public var editableMessagesPerRoom = 500
    /// Longest reaction (`react`'s emoji), in UTF-8 bytes: room for one emoji with its
    /// modifiers and joiners (a family emoji is 25 bytes), or a short word.
    public var emojiBytesMax = 32
    /// Distinct reactions one message may carry (each with any number of users).
    public var reactionsPerMessageMax = 20

    public init() {}

    public func validate() throws(ChatLimitsError) {
        for (name, value) in [("messageBytesMax", messageBytesMax), ("roomNameBytesMax", roomNameBytesMax),
                              ("clientMessageIDBytesMax", clientMessageIDBytesMax),
                              ("clientMessageIDWindow", clientMessageIDWindow),
                              ("clientIDSendersPerRoomMax", clientIDSendersPerRoomMax),
                              ("editableMessagesPerRoom", editableMessagesPerRoom),
                              ("emojiBytesMax", emojiBytesMax), ("reactionsPerMessageMax", reactionsPerMessageMax)] where value < 1 {
            throw ChatLimitsError(message: "\(name) must be at least 1, got \(value)")
        }
        if messageBytesMax > ChatEventCodec.textBytesLimit {
            throw ChatLimitsError(message: "messageBytesMax (\(messageBytesMax)) exceeds the event format's limit of \(ChatEventCodec.textBytesLimit)")
        }
        if roomNameBytesMax > ChatEventCodec.shortStringBytesLimit || clientMessageIDBytesMax > ChatEventCodec.shortStringBytesLimit
            || emojiBytesMax > ChatEventCodec.shortStringBytesLimit {
            throw ChatLimitsError(message: "roomNameBytesMax, clientMessageIDBytesMax and emojiBytesMax must be at most \(ChatEventCodec.shortStringBytesLimit)")
        }
    }
}

public struct ChatLimitsError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { "invalid chat limits: \(message)" }
}
