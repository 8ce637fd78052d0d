import ChatModel
import Journal

extension RoomStateProjection {
    /// Applies every event from `nextOffset` up to `target`, decoding and placing events on a
    /// second thread while this one applies them (`DecodingPipeline`). `progress` gets the offset reached after each
    /// read of up to `readBytesMax` bytes.
    /// - Throws: `ProjectionError.malformedEvent` (everything before it is applied),
    ///   `.journal` from reading.
    public mutating func catchUp(
        journal: Journal,
        until target: Offset,
        readBytesMax: Int = 4 << 20,
        progress: ((Offset) -> Void)? = nil
    ) throws {
        try DecodingPipeline.run(journal: journal, from: nextOffset, until: target, readBytesMax: readBytesMax,
                                 placer: RoomState.Placer(mirroring: state)) { chunk in
            state.apply(chunk.items)
            skippedRecords += chunk.skipped
            nextOffset = chunk.end
            progress?(nextOffset)
        }
    }
}
