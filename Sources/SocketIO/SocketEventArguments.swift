/// The arguments of an event a client sent (after its name), kept as the received text and
/// read on demand: as values (`values`), straight into the caller's own types (`read`), or
/// relayed to other sockets as they are (`SocketSession.emit(namespace:event:relaying:...)`),
/// which copies their text without parsing it.
///
/// Equal when their values are equal.
public struct SocketEventArguments: Sendable, Equatable, ExpressibleByArrayLiteral {
    @usableFromInline
    enum Storage: Sendable {
        case values([JSONValue])
        /// A received EVENT packet.
        case packet(SocketPacket)
    }

    @usableFromInline
    let storage: Storage

    public init(_ values: [JSONValue]) {
        storage = .values(values)
    }

    public init(arrayLiteral values: JSONValue...) {
        storage = .values(values)
    }

    /// The arguments of a received EVENT packet.
    init(packet: SocketPacket) {
        storage = .packet(packet)
    }

    /// The arguments as values, built from the received text on each access.
    public var values: [JSONValue] {
        switch storage {
        case .values(let values): values
        case .packet(let packet): packet.arguments
        }
    }

    /// Reads the arguments straight from the received text: `body` gets a reader inside the
    /// arguments and calls `nextElement()` before each one it reads.
    /// - Throws: `body`'s errors; `.invalidSocketPacket` for arguments holding binary data.
    /// Inlinable, so that a caller's reader is specialized for its result (unspecialized, it
    /// looked up generic metadata at run time on every event).
    @inlinable
    public func read<R>(_ body: (inout JSONReader) throws(SocketIOProtocolError) -> R) throws(SocketIOProtocolError) -> R {
        switch storage {
        case .values(let values):
            try SocketPacket(.event, data: .array([.string("")] + values)).readEventArguments(body)
        case .packet(let packet):
            try packet.readEventArguments(body)
        }
    }

    /// The JSON text of an EVENT named `name` with these arguments, when they are received
    /// text: the name, then the arguments' text copied as it came (`["name",...]`).
    func relayedPayload(named name: String) -> SocketPacket.JSONText? {
        guard case .packet(let packet) = storage, case .json(let text, _, attachments: 0)? = packet.payload else { return nil }
        return text.withBytes { bytes -> SocketPacket.JSONText? in
            var reader = JSONReader(bytes: bytes)
            guard (try? reader.enterEventArguments()) != nil else { return nil }
            // After the name: `]`, or `,` and the arguments, written once behind the new name.
            let rest = UnsafeBufferPointer(rebasing: bytes[reader.index...])
            return JSONWriter.render(capacity: name.utf8.count + rest.count + 8) { writer in
                writer.put(UInt8(ascii: "["))
                writer.putQuoted(name)
                writer.put(rest)
                return true
            }.map { SocketPacket.JSONText($0) }
        }
    }

    public static func == (lhs: SocketEventArguments, rhs: SocketEventArguments) -> Bool {
        lhs.values == rhs.values
    }
}
