// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "chatlog",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chatlog", targets: ["chatlog"]),
        .library(name: "Journal", targets: ["Journal"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
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
            ]
        ),
        .executableTarget(
            name: "chatlog",
            dependencies: [
                "Journal",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
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
    ],
    swiftLanguageModes: [.v6]
)
