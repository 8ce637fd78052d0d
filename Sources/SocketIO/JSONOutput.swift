/// Writes JSON text from the caller's own values, without building a `JSONValue` tree:
/// commas are placed by the writer, the caller opens and closes containers and names
/// members. Valid only inside the closure that hands it out (`SocketPacket.encodeEvent`).
///
///     SocketPacket.encodeEvent("new-message") { json in
///         json.beginObject()
///         json.key("group"); json.string(group)
///         json.key("created"); json.integer(createdMs)
///         json.endObject()
///     }
public struct JSONOutput {
    var writer: JSONWriter
    /// Whether a value was written in the current container (so the next needs a comma).
    private var needsComma: Bool

    init(writer: JSONWriter, needsComma: Bool = false) {
        self.writer = writer
        self.needsComma = needsComma
    }

    @inline(__always)
    private mutating func separate() {
        if needsComma { writer.put(UInt8(ascii: ",")) }
        needsComma = true
    }

    public mutating func beginObject() { open(UInt8(ascii: "{")) }
    public mutating func endObject() { close(UInt8(ascii: "}")) }
    public mutating func beginArray() { open(UInt8(ascii: "[")) }
    public mutating func endArray() { close(UInt8(ascii: "]")) }

    private mutating func open(_ bracket: UInt8) {
        separate()
        writer.put(bracket)
        needsComma = false
    }

    private mutating func close(_ bracket: UInt8) {
        writer.put(bracket)
        needsComma = true
    }

    /// A member's name; its value comes next.
    public mutating func key(_ name: String) {
        separate()
        writer.putQuoted(name)
        writer.put(UInt8(ascii: ":"))
        needsComma = false
    }

    /// A member's name known when compiling: written from its bytes, with no string built.
    public mutating func key(_ name: StaticString) {
        guard name.hasPointerRepresentation else {
            key(name.description)
            return
        }
        separate()
        writer.putQuoted(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        writer.put(UInt8(ascii: ":"))
        needsComma = false
    }

    public mutating func string(_ value: String) {
        separate()
        writer.putQuoted(value)
    }

    public mutating func integer(_ value: Int64) {
        separate()
        if value < 0 { writer.put(UInt8(ascii: "-")) }
        writer.put(decimal: value.magnitude)
    }

    /// As `JSONValue.number` writes it (integers as digits; no NaN or infinity in JSON:
    /// they are written as `null`).
    public mutating func number(_ value: Double) {
        separate()
        if value.isFinite {
            _ = JSONValue.number(value).write(to: &writer)
        } else {
            writer.put("null")
        }
    }

    public mutating func bool(_ value: Bool) {
        separate()
        writer.put(value ? "true" : "false")
    }

    public mutating func null() {
        separate()
        writer.put("null")
    }

    /// A value built as a tree, for the parts of a payload that have no type of their own.
    /// Binary values are not allowed here (they travel as attachments): written as `null`.
    public mutating func value(_ value: JSONValue) {
        separate()
        let start = writer
        if !value.write(to: &writer) {
            writer = start
            writer.put("null")
        }
    }
}
