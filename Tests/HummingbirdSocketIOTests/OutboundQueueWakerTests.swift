import Logging
import SocketIO
import Synchronization
import Testing
@testable import HummingbirdSocketIO

/// The event-loop writer's side of `OutboundQueue`: woken once per burst, takes without waiting.
@Suite struct OutboundQueueWakerTests {
    final class Counter: Sendable {
        let value = Mutex(0)
        func increment() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    @Test func theWakerIsCalledOncePerBurstUntilTheWriterTakes() {
        let queue = OutboundQueue<Int>(capacity: 8)
        let wakes = Counter()
        queue.setWaker { wakes.increment() }
        #expect(wakes.count == 0)  // nothing to take yet
        #expect(queue.yield(1) == .enqueued)
        #expect(queue.yield(2) == .enqueued)
        #expect(wakes.count == 1)
        guard case .items(let first) = queue.take() else {
            Issue.record("nothing taken")
            return
        }
        #expect(first == [1, 2])
        guard case .empty = queue.take() else {
            Issue.record("an empty queue gave something")
            return
        }
        #expect(queue.yield(3) == .enqueued)
        #expect(wakes.count == 2)
        queue.finish()
        #expect(wakes.count == 2)  // still unanswered: no second call
        guard case .items(let second) = queue.take(), case .finished = queue.take() else {
            Issue.record("the end was not reported after the last items")
            return
        }
        #expect(second == [3])
    }

    @Test func aWakerSetLateIsCalledAtOnceForWhatWaits() {
        let queue = OutboundQueue<Int>(capacity: 2)
        #expect(queue.yield(1) == .enqueued)
        #expect(queue.yield(2) == .enqueued)
        #expect(queue.yield(3) == .dropped)
        let wakes = Counter()
        queue.setWaker { wakes.increment() }
        #expect(wakes.count == 1)
        queue.finish()
        #expect(wakes.count == 1)
        guard case .items(let items) = queue.take() else {
            Issue.record("nothing taken")
            return
        }
        #expect(items == [1, 2])
        #expect(queue.yield(4) == .terminated)
    }
}
