/// Decoding: the header, the payload checked in one pass, and binary attachments put back.
extension SocketPacket {
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
