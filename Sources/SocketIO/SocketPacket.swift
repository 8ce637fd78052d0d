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

    // MARK: Encoding

    /// The text of the packet and its binary attachments, in order. An `event` or `ack` whose
    /// data contains binary is sent as `binaryEvent` / `binaryAck`.
    public func encode() -> (text: String, attachments: [[UInt8]]) {
        // The closures below capture these rather than `self` (a copy of the packet each).
        let type = type
        let namespace = namespace
        let id = id
        func writeHeader(type: PacketType, attachments: Int, to writer: inout JSONWriter) {
            Self.writeHeader(type: type, namespace: namespace, id: id, attachments: attachments, to: &writer)
        }
        switch payload {
        case .value(let data)?:
            if let text = JSONWriter.render({ writer in
                writeHeader(type: type, attachments: 0, to: &writer)
                return data.write(to: &writer)
            }) {
                return (text, [])
            }
            // Binary inside: placeholders in the JSON, the bytes as attachments.
            var attachments: [[UInt8]] = []
            let replaced = Self.extractBinary(data, into: &attachments)
            let binaryType: PacketType = type == .event ? .binaryEvent : (type == .ack ? .binaryAck : type)
            let text = JSONWriter.render { writer in
                writeHeader(type: binaryType, attachments: attachments.count, to: &writer)
                return replaced.write(to: &writer)
            }
            return (text ?? "", attachments)  // `replaced` holds no binary: never nil
        case .json(let text, _, let attachments)?:
            // Received text keeps its placeholders; its attachments travel beside it.
            return (Self.encode(type: type, namespace: namespace, id: id, attachments: attachments, payload: text), [])
        case nil:
            return (JSONWriter.render { writeHeader(type: type, attachments: 0, to: &$0); return true } ?? "", [])
        }
    }

    /// A header and a received payload's text, written straight into the new string's storage.
    private static func encode(type: PacketType, namespace: String, id: UInt64?, attachments: Int, payload: JSONText) -> String {
        // A header takes at most 43 bytes besides its namespace: the type, two 20-digit
        // numbers, `-` and `,`.
        let headerMax = namespace.utf8.count + 43
        return payload.string.withContiguousUTF8 { all in
            let bytes = UnsafeBufferPointer(rebasing: all[payload.start...])
            return String(unsafeUninitializedCapacity: bytes.count + headerMax) { buffer in
                JSONWriter.write(into: buffer) { writer in
                    writeHeader(type: type, namespace: namespace, id: id, attachments: attachments, to: &writer)
                    writer.put(bytes)
                }
            }
        }
    }

    private static func writeHeader(type: PacketType, namespace: String, id: UInt64?, attachments: Int, to writer: inout JSONWriter) {
        writer.put(UInt8(ascii: "0") + type.rawValue)
        if type == .binaryEvent || type == .binaryAck {
            writer.put(decimal: UInt64(attachments))
            writer.put(UInt8(ascii: "-"))
        }
        if namespace != "/" {
            writer.put(namespace)
            writer.put(UInt8(ascii: ","))
        }
        if let id { writer.put(decimal: id) }
    }

    /// The text of an EVENT packet whose arguments `arguments` writes straight into it, with
    /// no `JSONValue` tree: `2`, the namespace and ack id when given, then
    /// `["name", arguments...]`. Text only: binary data needs `SocketPacket` and `encode()`.
    public static func encodeEvent(
        _ name: String,
        namespace: String = "/",
        id: UInt64? = nil,
        arguments: (inout JSONOutput) -> Void
    ) -> String {
        JSONWriter.render(capacity: 256) { writer in
            writeHeader(type: .event, namespace: namespace, id: id, attachments: 0, to: &writer)
            writeEventPayload(name, arguments: arguments, to: &writer)
            return true
        } ?? ""
    }

    /// An EVENT packet whose payload `arguments` writes straight into its text (see
    /// `encodeEvent`), for a session to send.
    static func event(_ name: String, namespace: String, arguments: (inout JSONOutput) -> Void) -> SocketPacket {
        var packet = SocketPacket(.event, namespace: namespace)
        let payload = JSONWriter.render(capacity: 256) { writer in
            writeEventPayload(name, arguments: arguments, to: &writer)
            return true
        } ?? "[]"
        packet.payload = .json(JSONText(payload), .array(startsWithString: true), attachments: 0)
        return packet
    }

    private static func writeEventPayload(_ name: String, arguments: (inout JSONOutput) -> Void, to writer: inout JSONWriter) {
        writer.put(UInt8(ascii: "["))
        writer.putQuoted(name)
        var output = JSONOutput(writer: writer, needsComma: true)
        arguments(&output)
        writer = output.writer
        writer.put(UInt8(ascii: "]"))
    }

    /// Reads an EVENT's arguments straight from the received text, with no `JSONValue` tree:
    /// `body` gets a reader inside the packet's array, after the event name; it calls
    /// `nextElement()` before each argument it reads.
    /// - Throws: `SocketIOProtocolError.invalidSocketPacket` when this is not an EVENT with
    ///   a name; `body`'s errors.
    @inlinable
    public func readEventArguments<R>(
        _ body: (inout JSONReader) throws(SocketIOProtocolError) -> R
    ) throws(SocketIOProtocolError) -> R {
        let text = try eventText()
        return try text.withBytes { bytes in
            Result { () throws(SocketIOProtocolError) -> R in
                var reader = JSONReader(bytes: bytes)
                try reader.enterEventArguments()
                return try body(&reader)
            }
        }.get()
    }

    /// The JSON text of an EVENT's payload.
    @usableFromInline
    func eventText() throws(SocketIOProtocolError) -> JSONText {
        guard type == .event || type == .binaryEvent else { throw .invalidSocketPacket("not an EVENT") }
        switch payload {
        case .json(let received, _, _)?:
            return received
        case .value(let value)?:
            guard let rendered = JSONWriter.render({ value.write(to: &$0) }) else {
                throw .invalidSocketPacket("binary arguments cannot be read as text")
            }
            return JSONText(rendered)
        case nil:
            throw .invalidSocketPacket("EVENT payload must start with the event name")
        }
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
        var header = Header()
        var failure: SocketIOProtocolError?
        text.withContiguousUTF8 { bytes in
            // Not a `Result`: its tag and the header's last byte were stored apart and loaded
            // as one word, a store-forwarding stall on every packet.
            do throws(SocketIOProtocolError) { header = try decodeHeader(bytes: bytes, limits: limits) } catch { failure = error }
        }
        if let failure { throw failure }
        try check(type: header.type, id: header.id, payload: header.payloadKind, attachments: header.attachments)
        let namespace = header.namespace.map { range in
            text.withContiguousUTF8 { String(decoding: UnsafeBufferPointer(rebasing: $0[range]), as: UTF8.self) }
        } ?? "/"
        // Built with the memberwise initializers: a written one built the packet in memory,
        // returned a copy and destroyed the original (a retain and release of each field).
        let payload = header.payloadKind.map { kind in
            Payload.json(JSONText(text, from: header.payloadStart), kind, attachments: header.attachments)
        }
        return Decoded(packet: SocketPacket(type: header.type, namespace: namespace, id: header.id, payload: payload),
                       attachments: header.attachments)
    }

    /// What `decodeHeader` read: plain values, no strings (copying it costs nothing).
    struct Header {
        var type = PacketType.connect
        /// The namespace's bytes, when the packet names one (`/` otherwise).
        var namespace: Range<Int>?
        var id: UInt64?
        var attachments = 0
        var payloadStart = 0
        var payloadKind: JSONValidator.Kind?
    }

    /// Decodes the header and validates the JSON payload that follows it.
    static func decodeHeader(bytes: UnsafeBufferPointer<UInt8>, limits: Limits) throws(SocketIOProtocolError) -> Header {
        var index = 0
        guard let first = bytes.first, first >= UInt8(ascii: "0"), let type = PacketType(rawValue: first &- UInt8(ascii: "0")) else {
            throw .invalidSocketPacket("unknown packet type")
        }
        index = 1
        func readDigits(_ limit: Int) -> (value: UInt64, count: Int) {
            var value: UInt64 = 0
            var count = 0
            while index < bytes.count, count < limit, bytes[index] &- UInt8(ascii: "0") < 10 {
                value = value * 10 + UInt64(bytes[index] &- UInt8(ascii: "0"))
                index += 1
                count += 1
            }
            return (value, count)
        }
        var attachments = 0
        if type == .binaryEvent || type == .binaryAck {
            let digits = readDigits(4)
            guard digits.count > 0, index < bytes.count, bytes[index] == UInt8(ascii: "-") else {
                throw .invalidSocketPacket("binary packet without an attachment count")
            }
            guard digits.value <= UInt64(limits.attachmentsMax) else {
                throw .tooLarge(what: "attachment count", bytes: Int(digits.value), limit: limits.attachmentsMax)
            }
            attachments = Int(digits.value)
            index += 1
        }
        var namespace: Range<Int>?
        if index < bytes.count, bytes[index] == UInt8(ascii: "/") {
            let start = index
            while index < bytes.count, bytes[index] != UInt8(ascii: ",") {
                index += 1
                guard index - start <= limits.namespaceBytesMax else {
                    throw .tooLarge(what: "namespace", bytes: index - start, limit: limits.namespaceBytesMax)
                }
            }
            namespace = start..<index
            if index < bytes.count { index += 1 }  // the comma; a namespace may also end the packet
        }
        var id: UInt64?
        let digits = readDigits(17)
        if digits.count > 0 {
            guard digits.value <= ackIDMax, index == bytes.count || bytes[index] &- UInt8(ascii: "0") >= 10 else {
                throw .invalidSocketPacket("ack id out of range")
            }
            id = digits.value
        }
        var kind: JSONValidator.Kind?
        if index < bytes.count {
            kind = try JSONValidator.validate(buffer: UnsafeBufferPointer(rebasing: bytes[index...]),
                                              depthMax: limits.depthMax, utf8Known: true)
        }
        return Header(type: type, namespace: namespace, id: id, attachments: attachments, payloadStart: index, payloadKind: kind)
    }

    /// What the specification requires of a packet's type, ack id and payload kind.
    private static func check(type: PacketType, id: UInt64?, payload kind: JSONValidator.Kind?, attachments: Int) throws(SocketIOProtocolError) {
        switch type {
        case .connect:
            if kind != nil && kind != .object { throw .invalidSocketPacket("CONNECT payload must be an object") }
            if id != nil { throw .invalidSocketPacket("CONNECT carries no ack id") }
        case .disconnect:
            if kind != nil || id != nil { throw .invalidSocketPacket("DISCONNECT carries no payload") }
        case .event, .binaryEvent:
            guard kind == .array(startsWithString: true) else {
                throw .invalidSocketPacket("EVENT payload must be a non-empty array starting with the event name")
            }
        case .ack, .binaryAck:
            guard case .array? = kind else { throw .invalidSocketPacket("ACK payload must be an array") }
            guard id != nil else { throw .invalidSocketPacket("ACK needs an ack id") }
        case .connectError:
            guard kind == .object || kind == .string else {
                throw .invalidSocketPacket("CONNECT_ERROR payload must be an object or a string")
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
                    // `Int(exactly:)`: a huge or fractional number names no attachment (and
                    // must not trap, as `Int(_:)` does beyond Int.max).
                    guard let index = Int(exactly: num), index >= 0, index < attachments.count else {
                        throw .invalidSocketPacket("placeholder \(num) does not name one of \(attachments.count) attachments")
                    }
                    used.insert(index)
                    return .binary(attachments[index])
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

// Initializers live in an extension so that the memberwise one stays: it builds the packet
// as one value, where a written initializer built it in memory and returned a copy.
extension SocketPacket {
    public init(_ type: PacketType, namespace: String = "/", id: UInt64? = nil, data: JSONValue? = nil) {
        self.init(type: type, namespace: namespace, id: id, payload: data.map(Payload.value))
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
