import NIOCore

/// Which leader epoch wrote which offsets: `<journal>/leader-epochs` (FORMAT.md §5).
///
/// Every batch carries the epoch of the leader that wrote it; this file says where each
/// epoch began, including an epoch whose leader has not written yet (it starts at the journal
/// end of its promotion). A standby compares it with its leader's to find where their
/// journals diverge (the end of its last epoch in the leader's history), as Kafka's leader
/// epoch checkpoint does. Epoch 0 from offset 0 is implied. A value type.
public struct LeaderEpochs: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var epoch: UInt32
        public var start: Offset

        public init(epoch: UInt32, start: Offset) {
            self.epoch = epoch
            self.start = start
        }
    }

    /// Ascending in both fields; never empty (epoch 0 from 0 when nothing else is known).
    public private(set) var entries: [Entry]

    public init(entries: [Entry] = []) {
        self.entries = [Entry(epoch: 0, start: .zero)]
        for entry in entries { record(entry.epoch, from: entry.start) }
    }

    static let fileName = "leader-epochs"

    /// The newest epoch.
    public var current: UInt32 { entries[entries.count - 1].epoch }

    /// Records that `epoch` begins at `start`; nothing when it is not newer than the current one.
    @discardableResult
    public mutating func record(_ epoch: UInt32, from start: Offset) -> Bool {
        guard epoch > current else { return false }
        // An epoch that wrote nothing ends where the next begins: keep one entry per start.
        if let last = entries.last, last.start == start, entries.count > 1 { entries.removeLast() }
        entries.append(Entry(epoch: epoch, start: max(start, entries[entries.count - 1].start)))
        return true
    }

    /// Where the journal of a node whose last batch has `epoch` stops agreeing with this one:
    /// the start of the first newer epoch here, or nil when `epoch` is the newest here (or
    /// newer: then this history is the stale one).
    public func end(of epoch: UInt32) -> Offset? {
        entries.first { $0.epoch > epoch }?.start
    }

    /// Forgets the epochs that began at or after `offset` (the journal was cut there).
    public mutating func truncate(to offset: Offset) {
        entries.removeAll { $0.start >= offset && $0.epoch > 0 }
    }

    // MARK: The file

    /// Lines `EPOCH START\n`, ascending; the implied epoch 0 is not written.
    func encoded() -> ByteBuffer {
        var text = ""
        for entry in entries where entry.epoch > 0 { text += "\(entry.epoch) \(entry.start.value)\n" }
        return ByteBuffer(string: text)
    }

    static func decode(_ text: String, path: String) throws(JournalError) -> LeaderEpochs {
        var epochs = LeaderEpochs()
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let epoch = UInt32(fields[0]), let start = UInt64(fields[1]),
                  epochs.record(epoch, from: Offset(start)) else {
                throw .unsupportedJournal(directory: path, reason: "\(fileName) has a line that is not `EPOCH START` in ascending order: \(line)")
            }
        }
        return epochs
    }

    static func load(directory: String) throws(JournalError) -> LeaderEpochs {
        let path = JournalFiles.join(directory, fileName)
        guard FileSystem.exists(path) else { return LeaderEpochs() }
        var bytes = try FileSystem.readAll(path)
        return try decode(bytes.readString(length: bytes.readableBytes) ?? "", path: path)
    }

    func save(directory: String) throws(JournalError) {
        try FileSystem.writeAtomically(encoded(), to: JournalFiles.join(directory, Self.fileName), directory: directory)
    }
}
