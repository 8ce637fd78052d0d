import Foundation
import Logging
import NIOCore
import Testing
@testable import Journal

@Suite struct DurabilityTests {
    @Test(arguments: [Durability.everyBatch, .interval(.milliseconds(5)), .none])
    func everyPolicyAcknowledgesAppendsAndKeepsThemAcrossReopen(durability: Durability) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let journal = try Journal.open(directory: directory.path, configuration: smallConfiguration(durability: durability), logger: .quiet)
        for n in 0..<50 {
            #expect(try await journal.append(record(n)) == Offset(UInt64(n)))
            if n % 10 == 0 { try await Task.sleep(for: .milliseconds(7)) }  // let interval syncs fire
        }
        await journal.close()
        let reopened = try Journal.open(directory: directory.path, configuration: smallConfiguration(durability: durability), logger: .quiet)
        #expect(try readAll(reopened).map { string($0.payload) } == (0..<50).map { string(record($0)) })
        await reopened.close()
    }

    @Test func durabilityPolicyIsDescribedForTheLogs() {
        #expect(Durability.everyBatch.description == "fsync every batch")
        #expect(Durability.none.description.contains("may be lost"))
    }
}
