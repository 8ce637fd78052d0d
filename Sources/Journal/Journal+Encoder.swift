import Dispatch
import NIOCore
import Synchronization

/// Batches encoded by the encoder thread, ready to be written: their bytes back to back, and
/// each batch's header and start in `bytes`.
struct EncodedGroup: Sendable {
    var bytes: ByteBuffer
    var batches: [(header: BatchHeader, start: Int)] = []
    /// Copied from a leader (`Journal.appendReplicated`): segments are cut where the leader
    /// cut them (`segmentStart`), never by size.
    var replicated = false
    /// For a copied group: the batch with this base offset starts a new segment.
    var segmentStart: Offset?
}

/// Compresses and checksums the batches of a group, in parallel when there are several.
/// Owned by the encoder thread; keeps its buffers between groups.
struct GroupEncoder {
    private var scratches: [[UInt8]] = []
    private var parts: [ByteBuffer] = []
    private var headers: [BatchHeader?] = []

    mutating func encode(_ batches: [PendingBatch], leaderEpoch: UInt32, into group: inout EncodedGroup) {
        if batches.count == 1, let batch = batches.first {
            if scratches.isEmpty { scratches.append([]) }
            let start = group.bytes.writerIndex
            let header = BatchCodecIO.encode(
                framed: batch.framed, count: batch.count, baseOffset: batch.baseOffset, leaderEpoch: leaderEpoch,
                firstTimestampMs: batch.firstTimestampMs, lastTimestampMs: batch.lastTimestampMs,
                scratch: &scratches[0], into: &group.bytes)
            group.batches.append((header, start))
            return
        }
        while parts.count < batches.count {
            scratches.append([])
            parts.append(ByteBufferAllocator().buffer(capacity: 64 << 10))
            headers.append(nil)
        }
        scratches.withUnsafeMutableBufferPointer { scratches in
            parts.withUnsafeMutableBufferPointer { parts in
                headers.withUnsafeMutableBufferPointer { headers in
                    // Each iteration touches only its own index of the three buffers.
                    nonisolated(unsafe) let scratches = scratches
                    nonisolated(unsafe) let parts = parts
                    nonisolated(unsafe) let headers = headers
                    DispatchQueue.concurrentPerform(iterations: batches.count) { index in
                        let batch = batches[index]
                        parts[index].clear()
                        headers[index] = BatchCodecIO.encode(
                            framed: batch.framed, count: batch.count, baseOffset: batch.baseOffset,
                            leaderEpoch: leaderEpoch, firstTimestampMs: batch.firstTimestampMs,
                            lastTimestampMs: batch.lastTimestampMs, scratch: &scratches[index], into: &parts[index])
                    }
                }
            }
        }
        for index in batches.indices {
            guard let header = headers[index] else { preconditionFailure("batch \(index) of the group was encoded") }
            group.batches.append((header, group.bytes.writerIndex))
            group.bytes.writeImmutableBuffer(parts[index])
            headers[index] = nil
        }
    }
}

/// The encoder thread: takes what is pending as one group, compresses and checksums it, and
/// hands it to the writer through the one-slot `Handoff`.
extension Journal {
    /// Waits until the writer has taken the previous group, then takes everything pending as
    /// one group, compresses and checksums it and hands it over; sleeps when nothing is pending.
    ///
    /// Taking the pending records only once the slot is free means a group holds everything
    /// appended while the writer was busy with the previous one: groups stay large, and the
    /// encoding of group n+1 overlaps the write and fsync of group n.
    func runEncoder() {
        var encoder = GroupEncoder()
        groups: while true {
            handoff.slotFree.wait()
            if handoff.slot.withLock({ $0.writerStopped }) { return }
            var batches: [PendingBatch] = []
            var epoch: UInt32 = 0
            while batches.isEmpty {
                enum Work {
                    case encode([PendingBatch], epoch: UInt32)
                    case forward(EncodedGroup)
                    case sleep
                    case finish
                    case stop
                }
                let work: Work = state.withLock { state in
                    // A standby's copied batches are encoded already: handed on as they are.
                    if !state.replicated.isEmpty {
                        return .forward(state.replicated.removeFirst().group)
                    }
                    if !state.pending.isEmpty {
                        let batches = state.pending
                        state.pending.removeAll(keepingCapacity: true)
                        state.pendingBytes = 0
                        // Appends parked for room join the next group while this one is encoded.
                        state.admitBlocked(configuration: configuration)
                        return .encode(batches, epoch: state.epochs.current)
                    }
                    switch state.lifecycle {
                    case .open:
                        state.encoderSleeping = true
                        return .sleep
                    case .closing:
                        return .finish
                    case .failed, .closed:
                        return .stop
                    }
                }
                switch work {
                case .encode(let taken, let current):
                    batches = taken
                    epoch = current
                case .forward(let group):
                    put(.group(group))
                    continue groups
                case .sleep:
                    encoderWakeup.wait()
                case .finish:
                    put(.finish)
                    return
                case .stop:
                    return
                }
            }
            var group = EncodedGroup(bytes: handoff.slot.withLock { $0.spareBuffers.popLast() }
                ?? ByteBufferAllocator().buffer(capacity: 1 << 20))
            group.bytes.clear()
            encoder.encode(batches, leaderEpoch: epoch, into: &group)
            recycle(batches)
            put(.group(group))
        }
    }

    /// Puts `item` in the slot, whose `slotFree` permit the encoder holds, and wakes the writer.
    private func put(_ item: Handoff.Item) {
        handoff.slot.withLock { slot in
            precondition(slot.item == nil, "the encoder holds the slot permit, so the slot is empty")
            slot.item = item
        }
        handoff.groupReady.signal()
    }

    private func recycle(_ batches: [PendingBatch]) {
        state.withLock { state in
            for var batch in batches where state.spareBuffers.count < 8 {
                batch.framed.clear()
                state.spareBuffers.append(batch.framed)
            }
        }
    }
}
