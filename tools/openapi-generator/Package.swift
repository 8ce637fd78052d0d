// swift-tools-version: 6.1
// Builds swift-openapi-generator's command-line tool for tools/generate-openapi.sh. Not part of
// the server's build: the generated code is committed (see that script for why).
import PackageDescription

let package = Package(
    name: "openapi-generator-tool",
    dependencies: [
        .package(url: "https://github.com/apple/swift-openapi-generator.git", exact: "1.14.3"),
    ]
)
