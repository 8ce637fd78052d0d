import Projections
import Testing

@testable import ChatServer

@Suite struct ChatServerLimitsTests {
    @Test func theDefaultsAreValid() throws {
        try ChatServerLimits().validate()
    }

    /// A page larger than History reads in one query is refused at start, not cut silently
    /// on each request.
    @Test func aHistoryPageBeyondWhatHistoryReadsIsRefused() throws {
        var limits = ChatServerLimits()
        limits.historyPageMax = HistoryProjection.pageLimitMax + 1
        #expect(throws: ChatServerError.self) { try limits.validate() }
        limits.historyPageMax = HistoryProjection.pageLimitMax
        limits.historyPageDefault = limits.historyPageMax + 1
        #expect(throws: ChatServerError.self) { try limits.validate() }
    }

    @Test func aReplayChunkMustFitTheOutboundQueue() {
        var limits = ChatServerLimits()
        limits.replayChunkEvents = limits.outboundQueueFramesMax
        #expect(throws: ChatServerError.self) { try limits.validate() }
    }

    /// The projections' write intervals are bounded: History's to 1 s (requests wait for it
    /// when they find it behind), the index's to 60 s; neither may be negative.
    @Test func theProjectionIntervalsAreBounded() throws {
        var limits = ChatServerLimits()
        for (interval, valid) in [(Duration.zero, true), (.seconds(1), true), (.milliseconds(1_001), false), (.milliseconds(-1), false)] {
            limits.historyWriteInterval = interval
            if valid { try limits.validate() } else { #expect(throws: ChatServerError.self) { try limits.validate() } }
        }
        limits = ChatServerLimits()
        limits.searchIndexInterval = .seconds(61)
        #expect(throws: ChatServerError.self) { try limits.validate() }
    }
}
