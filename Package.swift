// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "chatlog",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chatlog", targets: ["chatlog"]),
        .library(name: "Journal", targets: ["Journal"]),
        .library(name: "ChatModel", targets: ["ChatModel"]),
        .library(name: "Projections", targets: ["Projections"]),
        .library(name: "SocketIO", targets: ["SocketIO"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.13.0"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.0.0"),
    ],
    targets: [
        // liblz4 from Debian's liblz4-dev, found through pkg-config.
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // CRC-32C: SSE4.2 `crc32` instructions when the CPU has them, a table fallback otherwise.
        .target(
            name: "CCRC32C"
        ),
        .target(
            name: "Journal",
            dependencies: [
                "CLZ4",
                "CCRC32C",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // Chat events, their codec and the room rules. Knows nothing of the journal.
        .target(
            name: "ChatModel",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        // Room state and history rebuilt from the journal.
        .target(
            name: "Projections",
            dependencies: [
                "Journal",
                "ChatModel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                // The SQLite C API under GRDB, for the search index's one hot statement.
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                "CSQLiteTuning",
            ]
        ),
        // Finding the bytes that end a JSON string's plain run, sixteen at a time (SSE2).
        .target(name: "CByteScan"),
        // Process-wide SQLite settings that need its variadic `sqlite3_config`.
        .target(name: "CSQLiteTuning", linkerSettings: [.linkedLibrary("sqlite3")]),
        // Engine.IO v4 and Socket.IO v5: packets and sessions, no HTTP framework, no journal.
        .target(name: "SocketIO", dependencies: ["CByteScan"]),
        // Socket.IO on Hummingbird/NIO: sessions, transports (long-polling and chatlog's own
        // WebSocket layer), rooms of sockets, the endpoint. Knows nothing of chat.
        .target(
            name: "HummingbirdSocketIO",
            dependencies: [
                "SocketIO",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            ]
        ),
        // The chat application: socket events become commands, decided against the room state,
        // appended to the journal; the tailer applies what commits and broadcasts it.
        .target(
            name: "ChatServer",
            dependencies: [
                "Journal",
                "ChatModel",
                "Projections",
                "SocketIO",
                "HummingbirdSocketIO",
                "Replication",
                "ChatAPI",
                "Cluster",
                "Etcd",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // The web chat page (GET /). Web/vendor/ holds the official Socket.IO client once
            // tools/ensure-deps.sh has fetched it (git-ignored: no third-party file is committed).
            resources: [.copy("Web")]
        ),
        // The HTTP API's types and server stubs, generated from openapi.yaml by
        // tools/generate-openapi.sh and committed (see that script).
        .target(
            name: "ChatAPI",
            dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            exclude: ["openapi.yaml", "openapi-generator-config.yaml"]
        ),
        // Replication (FORMAT.md §11): a leader's fetch endpoint and a standby's follower, which
        // copies the leader's batches into its journal byte for byte.
        .target(
            name: "Replication",
            dependencies: [
                "Journal",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // A client of etcd's v3 gRPC API (KV, Lease, Watch) for cluster mode. Generated/ holds
        // the messages and clients from etcd's .proto files, made by tools/generate-etcd.sh and
        // committed (see that script).
        .target(
            name: "Etcd",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Cluster mode's coordination through etcd: registration, leader election with epochs,
        // the in-sync set, and the lease that fences a leader (docs/CLUSTER.md).
        .target(
            name: "Cluster",
            dependencies: ["Etcd", .product(name: "Logging", package: "swift-log")]
        ),
        // A minimal WebSocket client for the WebSocket benchmark and the live tests.
        .target(
            name: "LoopbackWebSocket",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        // `chatlog bench ...`: the benchmarks and their load client, apart from the commands a
        // user runs.
        .target(
            name: "ChatlogBench",
            dependencies: [
                "Journal",
                "ChatModel",
                "Projections",
                "SocketIO",
                "HummingbirdSocketIO",
                "Replication",
                "LoopbackWebSocket",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .executableTarget(
            name: "chatlog",
            dependencies: [
                "Journal",
                "ChatModel",
                "Projections",
                "HummingbirdSocketIO",
                "ChatServer",
                "ChatlogBench",
                "Replication",
                "Cluster",
                "Etcd",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "JournalTests",
            dependencies: [
                "Journal",
                "CCRC32C",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ChatModelTests",
            dependencies: ["ChatModel", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "SocketIOTests",
            dependencies: ["SocketIO", "CByteScan"],
            exclude: ["FuzzCorpus"]
        ),
        .testTarget(
            name: "HummingbirdSocketIOTests",
            dependencies: [
                "HummingbirdSocketIO",
                "SocketIO",
                "LoopbackWebSocket",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "ChatServerTests",
            dependencies: [
                "ChatServer",
                "ChatAPI",
                "ChatModel",
                "Journal",
                "SocketIO",
                "HummingbirdSocketIO",
                "LoopbackWebSocket",
                "Replication",
                "Projections",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Starts a real etcd for a test (Debian's etcd-server).
        .target(
            name: "EtcdTestSupport",
            dependencies: ["Etcd", .product(name: "Logging", package: "swift-log")],
            path: "Tests/EtcdTestSupport"
        ),
        .testTarget(
            name: "EtcdTests",
            dependencies: ["Etcd", "EtcdTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: ["Cluster", "Etcd", "EtcdTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "ProjectionsTests",
            dependencies: [
                "Projections",
                "ChatModel",
                "Journal",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
