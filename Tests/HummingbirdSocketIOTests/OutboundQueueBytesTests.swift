import Logging
import SocketIO
import Synchronization
import Testing
@testable import HummingbirdSocketIO

@Suite struct OutboundQueueBytesTests {
    /// 1,024 frames of 1.6 MB each once fitted a queue bounded by count alone.
    @Test func aQueueIsBoundedInBytesButTakesOneLargeItemWhenEmpty() {
        let queue = OutboundQueue<Int>(capacity: 100, bytesCapacity: 1_000) { $0 }
        #expect(queue.yield(5_000) == .enqueued, "one large reply reaches an empty queue")
        #expect(queue.yield(1) == .dropped)
        _ = queue.take()
        #expect(queue.yield(600) == .enqueued)
        #expect(queue.yield(400) == .enqueued)
        #expect(queue.yield(1) == .dropped)
    }

    @Test func queuesShareTheProcessBudgetAndGiveItBackWhenTakenOrAborted() {
        let budget = OutboundBudget(limit: 1_000)
        let first = OutboundQueue<Int>(capacity: 100, bytesCapacity: 800, budget: budget) { $0 }
        let second = OutboundQueue<Int>(capacity: 100, bytesCapacity: 800, budget: budget) { $0 }
        #expect(first.yield(700) == .enqueued)
        #expect(second.yield(400) == .dropped, "the budget is spent")
        #expect(second.yield(300) == .enqueued)
        #expect(budget.bytes == 1_000)
        _ = first.take()
        #expect(budget.bytes == 300)
        second.abort()
        #expect(budget.bytes == 0)
    }
}
