import ChatAPI
import ChatModel
import Foundation
import HTTPTypes
import Testing
@testable import ChatServer

@Suite struct APIOperationsTableTests {
    /// `ChatHTTPAPI.operations` (which answers 405 for the other methods) lists exactly the
    /// document's paths and methods.
    @Test func theTableOfMethodsIsTheDocuments() {
        var documented: [String: Set<String>] = [:]
        var path: String?
        for line in OpenAPIDocument.yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
                documented[path!] = []
            } else if !line.hasPrefix("  "), !line.isEmpty {
                path = nil
            } else if let current = path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"),
                      ["get", "post", "put", "patch", "delete"].contains(line.trimmingCharacters(in: .whitespaces).dropLast()) {
                documented[current]?.insert(line.trimmingCharacters(in: .whitespaces).dropLast().uppercased())
            }
        }
        let table = Dictionary(uniqueKeysWithValues: ChatHTTPAPI.operations.map { ($0.path, Set($0.methods.map(\.rawValue))) })
        #expect(!documented.isEmpty)
        #expect(table == documented)
    }
}
