/// An Engine.IO v4 packet: a type and, for most types, data that is text or (for `message`)
/// binary. The wire forms are drawn in the Engine.IO protocol's README; `SocketIOTests`
/// checks them. A value type.
public struct EnginePacket: Sendable, Equatable {
    public enum PacketType: UInt8, Sendable, CaseIterable {
        case open = 0
        case close = 1
        case ping = 2
        case pong = 3
        case message = 4
        case upgrade = 5
        case noop = 6

        /// The type's digit on the wire (`"0"` to `"6"`), as an ASCII byte.
        public var digit: UInt8 { UInt8(ascii: "0") + rawValue }
    }

    public enum Payload: Sendable, Equatable {
        case text(String)
        case binary([UInt8])
    }

    public var type: PacketType
    public var data: Payload

    /// The payload's size in bytes (UTF-8 for text), as the outbound limits count it.
    public var payloadBytes: Int {
        switch data {
        case .text(let text): text.utf8.count
        case .binary(let bytes): bytes.count
        }
    }

    public init(_ type: PacketType, _ data: Payload = .text("")) {
        self.type = type
        self.data = data
    }

    public static func message(_ text: String) -> EnginePacket { EnginePacket(.message, .text(text)) }

    /// The record separator between packets of an HTTP long-polling payload.
    public static let separator: UInt8 = 0x1E

    // MARK: WebSocket frames

    /// A text frame: the type digit, then the text. Binary messages go as binary frames
    /// (`binaryFrame`), with no type byte.
    public var textFrame: String? {
        guard case .text(let text) = data else { return nil }
        return String(type.rawValue) + text
    }

    /// The bytes of a binary WebSocket frame (only binary `message` packets have one).
    public var binaryFrame: [UInt8]? {
        guard type == .message, case .binary(let bytes) = data else { return nil }
        return bytes
    }

    /// Decodes a WebSocket text frame.
    /// - Throws: `SocketIOProtocolError.invalidEnginePacket` for an empty frame or an unknown type.
    public static func decode(textFrame: String) throws(SocketIOProtocolError) -> EnginePacket {
        guard let first = textFrame.utf8.first else { throw .invalidEnginePacket("empty packet") }
        guard first >= UInt8(ascii: "0"), let type = PacketType(rawValue: first &- UInt8(ascii: "0")) else {
            throw .invalidEnginePacket("unknown packet type \(String(UnicodeScalar(first)).debugDescription)")
        }
        return EnginePacket(type, .text(String(textFrame.utf8.dropFirst()) ?? ""))
    }

    /// A WebSocket binary frame is a binary `message`.
    public static func decode(binaryFrame: [UInt8]) -> EnginePacket {
        EnginePacket(.message, .binary(binaryFrame))
    }

    // MARK: HTTP long-polling payloads

    /// Packets joined by the record separator; binary messages as `b` + base64.
    public static func encodePayload(_ packets: [EnginePacket]) -> String {
        var payload = ""
        for (index, packet) in packets.enumerated() {
            if index > 0 { payload.unicodeScalars.append(Unicode.Scalar(separator)) }
            switch packet.data {
            case .text(let text):
                payload += String(packet.type.rawValue) + text
            case .binary(let bytes):
                payload += "b" + Base64.encode(bytes)
            }
        }
        return payload
    }

    /// Splits a polling request body into packets.
    /// - Parameters:
    ///   - packetsMax: more packets than this in one body is an error (bounded work per request).
    /// - Throws: `SocketIOProtocolError.invalidPayload` naming the bad packet.
    public static func decodePayload(_ body: [UInt8], packetsMax: Int = 256) throws(SocketIOProtocolError) -> [EnginePacket] {
        var packets: [EnginePacket] = []
        for (index, part) in body.split(separator: separator, omittingEmptySubsequences: false).enumerated() {
            guard packets.count < packetsMax else {
                throw .invalidPayload("more than \(packetsMax) packets in one payload")
            }
            guard let first = part.first else { throw .invalidPayload("packet \(index) is empty") }
            if first == UInt8(ascii: "b") {
                guard let bytes = Base64.decode(part.dropFirst()) else {
                    throw .invalidPayload("packet \(index) is not valid base64")
                }
                packets.append(EnginePacket(.message, .binary(bytes)))
                continue
            }
            guard let text = String(validating: part, as: UTF8.self) else {
                throw .invalidPayload("packet \(index) is not valid UTF-8")
            }
            do {
                packets.append(try decode(textFrame: text))
            } catch {
                throw .invalidPayload("packet \(index): \(error)")
            }
        }
        return packets
    }
}

/// Standard base64 with padding (RFC 4648 §4), as Engine.IO uses for binary in polling.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] { output.append(alphabet[Int(chunk >> UInt32(shift) & 0x3F)]) }
            index += 3
        }
        let rest = bytes.count - index
        if rest > 0 {
            var chunk = UInt32(bytes[index]) << 16
            if rest == 2 { chunk |= UInt32(bytes[index + 1]) << 8 }
            output.append(alphabet[Int(chunk >> 18 & 0x3F)])
            output.append(alphabet[Int(chunk >> 12 & 0x3F)])
            output.append(rest == 2 ? alphabet[Int(chunk >> 6 & 0x3F)] : UInt8(ascii: "="))
            output.append(UInt8(ascii: "="))
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// nil when the input is not canonical padded base64.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        let input = Array(text)
        guard input.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let last = index + 4 == input.count
            let padding = last ? input[(index + 2)...].filter { $0 == UInt8(ascii: "=") }.count : 0
            var chunk: UInt32 = 0
            for offset in 0..<4 {
                let byte = input[index + offset]
                if byte == UInt8(ascii: "=") {
                    guard last, offset >= 4 - padding else { return nil }
                    chunk <<= 6
                    continue
                }
                let value = reverse[Int(byte)]
                guard value != 0xFF else { return nil }
                chunk = chunk << 6 | UInt32(value)
            }
            output.append(UInt8(chunk >> 16 & 0xFF))
            if padding < 2 { output.append(UInt8(chunk >> 8 & 0xFF)) }
            if padding < 1 { output.append(UInt8(chunk & 0xFF)) }
            index += 4
        }
        return output
    }
}
