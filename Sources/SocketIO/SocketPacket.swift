/// A Socket.IO v5 packet. Its text form is
/// `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, and binary values of the
/// payload travel as separate attachments, replaced in the JSON by
/// `{"_placeholder":true,"num":N}`. A value type.
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
    public var data: JSONValue?

    public init(_ type: PacketType, namespace: String = "/", id: UInt64? = nil, data: JSONValue? = nil) {
        self.type = type
        self.namespace = namespace
        self.id = id
        self.data = data
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

    // MARK: Encoding

    /// The text of the packet and its binary attachments, in order. An `event` or `ack` whose
    /// data contains binary is sent as `binaryEvent` / `binaryAck`.
    public func encode() -> (text: String, attachments: [[UInt8]]) {
        var attachments: [[UInt8]] = []
        // Only a payload that holds binary needs rewriting with placeholders.
        let payload = data.map { $0.containsBinary ? Self.extractBinary($0, into: &attachments) : $0 }
        var type = self.type
        if !attachments.isEmpty {
            if type == .event { type = .binaryEvent }
            if type == .ack { type = .binaryAck }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(160)
        bytes.append(UInt8(ascii: "0") + type.rawValue)
        if type == .binaryEvent || type == .binaryAck {
            bytes.append(contentsOf: String(attachments.count).utf8)
            bytes.append(UInt8(ascii: "-"))
        }
        if namespace != "/" {
            bytes.append(contentsOf: namespace.utf8)
            bytes.append(UInt8(ascii: ","))
        }
        if let id { bytes.append(contentsOf: String(id).utf8) }
        payload?.serialize(into: &bytes)
        return (String(decoding: bytes, as: UTF8.self), attachments)
    }

    private static func extractBinary(_ value: JSONValue, into attachments: inout [[UInt8]]) -> JSONValue {
        switch value {
        case .binary(let bytes):
            attachments.append(bytes)
            return .object([("_placeholder", .bool(true)), ("num", .number(Double(attachments.count - 1)))])
        case .array(let items):
            return .array(items.map { extractBinary($0, into: &attachments) })
        case .object(let members):
            return .object(members.map { ($0.0, extractBinary($0.1, into: &attachments)) })
        default:
            return value
        }
    }

    // MARK: Decoding

    /// A packet header and payload decoded from text; binary packets still need their
    /// attachments (`SocketPacketAssembler`).
    public struct Decoded: Sendable, Equatable {
        public var packet: SocketPacket
        /// Attachments still to come, for `binaryEvent` and `binaryAck`.
        public var attachments: Int
    }

    /// Decodes the text of a packet and checks it as the specification requires: CONNECT
    /// carries an object or nothing; DISCONNECT nothing; EVENT a non-empty array whose first
    /// element is the event name; ACK an array; CONNECT_ERROR an object or a string.
    /// - Throws: `SocketIOProtocolError` saying what is wrong.
    public static func decode(_ text: String, limits: Limits = Limits()) throws(SocketIOProtocolError) -> Decoded {
        var text = text
        return try text.withUTF8 { bytes in
            Result { () throws(SocketIOProtocolError) -> Decoded in try decode(bytes: bytes, limits: limits) }
        }.get()
    }

    static func decode(bytes: UnsafeBufferPointer<UInt8>, limits: Limits) throws(SocketIOProtocolError) -> Decoded {
        var index = 0
        guard let first = bytes.first, first >= UInt8(ascii: "0"), let type = PacketType(rawValue: first &- UInt8(ascii: "0")) else {
            throw .invalidSocketPacket("unknown packet type")
        }
        index = 1
        func readDigits(_ limit: Int) -> String {
            let start = index
            while index < bytes.count, index - start < limit, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                index += 1
            }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        }
        var attachments = 0
        if type == .binaryEvent || type == .binaryAck {
            let digits = readDigits(4)
            guard !digits.isEmpty, index < bytes.count, bytes[index] == UInt8(ascii: "-"), let count = Int(digits) else {
                throw .invalidSocketPacket("binary packet without an attachment count")
            }
            guard count <= limits.attachmentsMax else {
                throw .tooLarge(what: "attachment count", bytes: count, limit: limits.attachmentsMax)
            }
            attachments = count
            index += 1
        }
        var namespace = "/"
        if index < bytes.count, bytes[index] == UInt8(ascii: "/") {
            let start = index
            while index < bytes.count, bytes[index] != UInt8(ascii: ",") {
                index += 1
                guard index - start <= limits.namespaceBytesMax else {
                    throw .tooLarge(what: "namespace", bytes: index - start, limit: limits.namespaceBytesMax)
                }
            }
            namespace = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            if index < bytes.count { index += 1 }  // the comma; a namespace may also end the packet
        }
        var id: UInt64?
        let digits = readDigits(17)
        if !digits.isEmpty {
            guard let value = UInt64(digits), value <= ackIDMax,
                  index == bytes.count || !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else {
                throw .invalidSocketPacket("ack id out of range")
            }
            id = value
        }
        var data: JSONValue?
        if index < bytes.count {
            data = try JSONParser.parse(buffer: UnsafeBufferPointer(rebasing: bytes[index...]), depthMax: limits.depthMax)
        }
        let packet = SocketPacket(type, namespace: namespace, id: id, data: data)
        try packet.validate(attachments: attachments)
        return Decoded(packet: packet, attachments: attachments)
    }

    private func validate(attachments: Int) throws(SocketIOProtocolError) {
        switch type {
        case .connect:
            if let data, case .object = data {} else if data != nil {
                throw .invalidSocketPacket("CONNECT payload must be an object")
            }
            if id != nil { throw .invalidSocketPacket("CONNECT carries no ack id") }
        case .disconnect:
            if data != nil || id != nil { throw .invalidSocketPacket("DISCONNECT carries no payload") }
        case .event, .binaryEvent:
            guard case .array(let items) = data, let name = items.first, case .string = name else {
                throw .invalidSocketPacket("EVENT payload must be a non-empty array starting with the event name")
            }
        case .ack, .binaryAck:
            guard case .array = data else { throw .invalidSocketPacket("ACK payload must be an array") }
            guard id != nil else { throw .invalidSocketPacket("ACK needs an ack id") }
        case .connectError:
            switch data {
            case .object?, .string?: break
            default: throw .invalidSocketPacket("CONNECT_ERROR payload must be an object or a string")
            }
        }
        if (type == .binaryEvent || type == .binaryAck) && attachments == 0 {
            throw .invalidSocketPacket("binary packet with no attachments")
        }
    }

    /// Replaces attachment placeholders with the binary attachments.
    /// - Throws: when a placeholder names a missing attachment, or an attachment is unused.
    public func withAttachments(_ attachments: [[UInt8]]) throws(SocketIOProtocolError) -> SocketPacket {
        var used = Set<Int>()
        func replace(_ value: JSONValue) throws(SocketIOProtocolError) -> JSONValue {
            switch value {
            case .object(let members):
                if value["_placeholder"] == .bool(true), case .number(let num)? = value["num"] {
                    guard num == num.rounded(), num >= 0, Int(num) < attachments.count else {
                        throw .invalidSocketPacket("placeholder \(num) does not name one of \(attachments.count) attachments")
                    }
                    used.insert(Int(num))
                    return .binary(attachments[Int(num)])
                }
                var replaced: [(String, JSONValue)] = []
                for (key, item) in members { replaced.append((key, try replace(item))) }
                return .object(replaced)
            case .array(let items):
                var replaced: [JSONValue] = []
                for item in items { replaced.append(try replace(item)) }
                return .array(replaced)
            default:
                return value
            }
        }
        var packet = self
        if let data { packet.data = try replace(data) }
        guard used.count == attachments.count else {
            throw .invalidSocketPacket("\(attachments.count) attachments announced, \(used.count) referenced")
        }
        packet.type = type == .binaryEvent ? .event : (type == .binaryAck ? .ack : type)
        return packet
    }
}

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
