/// Collects the binary frames that follow a binary Socket.IO packet, per connection.
///
/// Not thread-safe; owned by one connection's session.
public struct SocketPacketAssembler: Sendable {
    public let limits: SocketPacket.Limits
    /// Bytes of attachments one packet may carry in all.
    public let attachmentBytesMax: Int
    private var pending: SocketPacket.Decoded?
    private var attachments: [[UInt8]] = []
    private var attachmentBytes = 0

    public init(limits: SocketPacket.Limits = SocketPacket.Limits(), attachmentBytesMax: Int = 1_000_000) {
        self.limits = limits
        self.attachmentBytesMax = attachmentBytesMax
    }

    /// Feeds the text of a packet. Returns the packet when it is complete (it has no
    /// attachments), nil when attachments must follow.
    /// - Throws: a protocol error, or when a text packet arrives while attachments are due.
    public mutating func receive(text: String) throws(SocketIOProtocolError) -> SocketPacket? {
        guard pending == nil else { throw .invalidSocketPacket("text packet while \(attachmentsDue) attachments are due") }
        let decoded = try SocketPacket.decode(text, limits: limits)
        guard decoded.attachments > 0 else { return decoded.packet }
        pending = decoded
        attachments = []
        attachmentBytes = 0
        return nil
    }

    /// Feeds one binary attachment. Returns the packet once its last attachment arrived.
    public mutating func receive(binary: [UInt8]) throws(SocketIOProtocolError) -> SocketPacket? {
        guard let decoded = pending else { throw .invalidSocketPacket("binary data with no binary packet before it") }
        attachmentBytes += binary.count
        guard attachmentBytes <= attachmentBytesMax else {
            throw .tooLarge(what: "attachments", bytes: attachmentBytes, limit: attachmentBytesMax)
        }
        attachments.append(binary)
        guard attachments.count == decoded.attachments else { return nil }
        pending = nil
        defer { attachments = [] }
        return try decoded.packet.withAttachments(attachments)
    }

    public var attachmentsDue: Int {
        (pending?.attachments ?? 0) - attachments.count
    }
}
