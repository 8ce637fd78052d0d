/// Encoding: a packet's text and attachments, and events written straight into their text.
extension SocketPacket {
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

    /// The text of an ACK packet whose arguments `arguments` writes straight into it, with no
    /// `JSONValue` tree: `3`, the namespace when it is not the main one, the id, then
    /// `[arguments...]`. Text only.
    public static func encodeAck(namespace: String = "/", id: UInt64, arguments: (inout JSONOutput) -> Void) -> String {
        JSONWriter.render(capacity: 64) { writer in
            writeHeader(type: .ack, namespace: namespace, id: id, attachments: 0, to: &writer)
            writer.put(UInt8(ascii: "["))
            var output = JSONOutput(writer: writer, needsComma: false)
            arguments(&output)
            writer = output.writer
            writer.put(UInt8(ascii: "]"))
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
}
