import ChatAPI
import ChatModel
import Foundation
import HTTPTypes
import Testing
@testable import ChatServer

@Suite struct OpenAPIDocumentTests {
    /// The served document is the one the committed code was generated from, and that is the
    /// document in the repository: edit openapi.yaml without tools/generate-openapi.sh and this fails.
    @Test func theGeneratedCodeIsUpToDateWithTheDocument() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let document = try String(contentsOf: repository.appendingPathComponent("Sources/ChatAPI/openapi.yaml"), encoding: .utf8)
        #expect(OpenAPIDocument.yaml + "\n" == document, "run tools/generate-openapi.sh and commit what it writes")
    }
}
