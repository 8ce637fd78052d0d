// swift-tools-version: 6.1
// Builds protoc's Swift plugins (messages, and gRPC clients) for tools/generate-etcd.sh. Not
// part of the server's build: the generated code is committed (see that script for why).
import PackageDescription

let package = Package(
    name: "etcd-codegen-tools",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    ]
)
