/// A JSON value as Socket.IO payloads carry it, plus the one thing JSON cannot hold: binary
/// data, which the Socket.IO packet codec moves into attachments and back.
///
/// Objects keep their members in order (as JavaScript does), so a payload re-encodes to the
/// same text. A value type.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// JSON numbers are IEEE doubles, as in JavaScript.
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])
    /// Binary data: never in JSON text; a Socket.IO attachment.
    case binary([UInt8])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.number(let a), .number(let b)): a == b
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.binary(let a), .binary(let b)): a == b
        default: false
        }
    }

    /// The member named `key` of an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// Whether this value or anything inside it is binary.
    public var containsBinary: Bool {
        switch self {
        case .binary: true
        case .array(let items): items.contains { $0.containsBinary }
        case .object(let members): members.contains { $0.1.containsBinary }
        default: false
        }
    }
}

extension JSONValue {
    /// The JSON text of this value. Binary values must have been replaced by placeholders
    /// first (`SocketPacket.encode` does); here they trap, as a programmer error.
    public func serialized() -> String {
        guard let text = JSONWriter.render({ write(to: &$0) }) else {
            preconditionFailure("binary values are replaced by attachment placeholders before serializing")
        }
        return text
    }

    /// Numbers as JavaScript prints them: integers without a fraction, non-finite as null.
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
            return String(Int64(value))
        }
        return String(value)
    }
}
