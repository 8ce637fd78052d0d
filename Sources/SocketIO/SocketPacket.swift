/// A Socket.IO v5 packet. Its text form is
/// `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, and binary values of the
/// payload travel as separate attachments, replaced in the JSON by
/// `{"_placeholder":true,"num":N}`. A value type.
///
/// A decoded packet keeps its payload as the JSON text it arrived in, checked in full but not
/// yet built into a value: `data` builds it when asked, and encoding such a packet again
/// copies the text. Relaying an event costs no JSON work beyond the one validating pass.
public struct SocketPacket: Sendable, Equatable {
    public enum PacketType: UInt8, Sendable, CaseIterable {
        case connect = 0
        case disconnect = 1
        case event = 2
        case ack = 3
        case connectError = 4
        case binaryEvent = 5
        case binaryAck = 6
    }

    public var type: PacketType
    public var namespace: String
    public var id: UInt64?

    /// The payload: a value, or JSON text that `JSONValidator` accepted (with the number of
    /// binary attachments a binary packet's text announced).
    enum Payload: Sendable {
        case value(JSONValue)
        case json(JSONText, JSONValidator.Kind, attachments: Int)
    }

    /// JSON text inside a string: the received packet's text and where its payload starts,
    /// which costs less than a `Substring` (no index to check on the way in).
    @usableFromInline
    struct JSONText: Sendable {
        @usableFromInline let string: String
        @usableFromInline let start: Int

        init(_ string: String, from start: Int = 0) {
            self.string = string
            self.start = start
        }

        @inlinable
        func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
            string.withContiguousUTF8 { body(UnsafeBufferPointer(rebasing: $0[start...])) }
        }
    }

    var payload: Payload?

    /// The payload as a value (built from the received text on each call when the packet was
    /// decoded; keep the result rather than asking twice).
    public var data: JSONValue? {
        get {
            switch payload {
            case nil: return nil
            case .value(let value): return value
            case .json(let text, _, _): return Self.parseValidated(text)
            }
        }
        set { payload = newValue.map(Payload.value) }
    }

    public static func == (lhs: SocketPacket, rhs: SocketPacket) -> Bool {
        lhs.type == rhs.type && lhs.namespace == rhs.namespace && lhs.id == rhs.id && lhs.data == rhs.data
    }

    /// An EVENT's name (the payload's first element), without building the rest.
    public var eventName: String? {
        switch payload {
        case .value(.array(let items))?: return items.first?.stringValue
        case .json(let text, .array(startsWithString: true), _)?: return Self.parseLeadingString(text)
        default: return nil
        }
    }

    /// An EVENT's arguments (the payload's elements after the name), or an ACK's.
    public var arguments: [JSONValue] {
        guard case .array(let items)? = data else { return [] }
        return type == .event || type == .binaryEvent ? Array(items.dropFirst()) : items
    }

    /// The value of text the validator accepted; the parser accepts it too (same grammar,
    /// same limits), so the fallback is unreachable.
    private static func parseValidated(_ text: JSONText) -> JSONValue {
        text.withBytes { bytes in
            (try? JSONParser.parse(buffer: bytes, depthMax: JSONParser.validatedDepthMax)) ?? .null
        }
    }

    private static func parseLeadingString(_ text: JSONText) -> String? {
        text.withBytes { bytes in JSONParser.leadingString(ofArray: bytes) }
    }

    /// Limits for decoding packets from a peer.
    public struct Limits: Sendable {
        /// Most binary attachments one packet may announce.
        public var attachmentsMax = 10
        public var namespaceBytesMax = 128
        /// JSON nesting depth.
        public var depthMax = JSONParser.defaultDepthMax
        public init() {}
    }

    /// Ack ids above this are refused: JavaScript's largest exact integer.
    public static let ackIDMax: UInt64 = 9_007_199_254_740_991
}

// Initializers live in an extension so that the memberwise one stays: it builds the packet
// as one value, where a written initializer built it in memory and returned a copy.
extension SocketPacket {
    public init(_ type: PacketType, namespace: String = "/", id: UInt64? = nil, data: JSONValue? = nil) {
        self.init(type: type, namespace: namespace, id: id, payload: data.map(Payload.value))
    }
}
