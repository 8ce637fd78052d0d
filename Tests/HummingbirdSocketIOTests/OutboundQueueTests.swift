import Logging
import SocketIO
import Synchronization
import Testing
@testable import HummingbirdSocketIO

@Suite struct OutboundQueueTests {
    @Test func abortWakesAWriterEvenWithAWakeUpPending() {
        let queue = OutboundQueue<Int>(capacity: 3)
        let wakes = Mutex(0)
        queue.setWaker { wakes.withLock { $0 += 1 } }
        #expect(queue.yield(1) == .enqueued)
        #expect(wakes.withLock { $0 } == 1)
        // The writer was woken but did not take (its socket was not writable): a second item
        // does not wake it again, an abort does.
        #expect(queue.yield(2) == .enqueued)
        #expect(wakes.withLock { $0 } == 1)
        queue.abort()
        #expect(wakes.withLock { $0 } == 2)
        #expect(queue.isAborted)
        #expect(queue.yield(3) == .terminated)
        guard case .finished = queue.take() else {
            Issue.record("an aborted queue hands out nothing")
            return
        }
    }

    @Test func theWriterTakesEverythingQueuedAtOnceWithinTheCapacity() {
        let queue = OutboundQueue<Int>(capacity: 3)
        #expect(queue.yield(1) == .enqueued)
        #expect(queue.yield(2) == .enqueued)
        #expect(queue.yield(3) == .enqueued)
        #expect(queue.yield(4) == .dropped)
        guard case .items(let first) = queue.take() else {
            Issue.record("nothing taken")
            return
        }
        #expect(first == [1, 2, 3])
        // Taking a batch makes room again.
        #expect(queue.yield(5) == .enqueued)
        queue.finish()
        #expect(queue.yield(6) == .terminated)
        // What was queued before the end is still taken, then the queue ends.
        guard case .items(let last) = queue.take(), case .finished = queue.take() else {
            Issue.record("the end did not follow the last items")
            return
        }
        #expect(last == [5])
    }
}
