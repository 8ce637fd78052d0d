import Foundation
import Testing

/// Replays the committed fuzzing corpus through `FuzzHarness` on every test run, so what the
/// fuzzer once found stays fixed. `tools/fuzz.sh` grows the corpus.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("FuzzCorpus")

    @Test func everyCorpusInputKeepsTheDecodersProperties() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).sorted()
        #expect(names.count >= 20, "the committed corpus is missing")
        for name in names {
            let bytes = Array(try Data(contentsOf: Self.corpus.appendingPathComponent(name)))
            #expect(bytes.count <= 4_096, "\(name): corpus inputs stay small")
            let failure = FuzzHarness.check(bytes)
            #expect(failure == nil, "\(name): \(failure ?? "")")
        }
    }
}
