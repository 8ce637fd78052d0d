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
}
