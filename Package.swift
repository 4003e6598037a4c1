// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Torus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Torus", targets: ["Torus"]),
        .library(name: "TorusWebSocket", targets: ["TorusWebSocket"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CLiburing",
            pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]
        ),
        .target(
            name: "Torus",
            dependencies: [
                "CLiburing",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(
            name: "TorusWebSocket",
            dependencies: ["CZlib"],
            path: "Sources/TorusWebSocket",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TorusWebSocketTests",
            dependencies: ["TorusWebSocket", "CZlib"],
            path: "Tests/TorusWebSocketTests",
            swiftSettings: strict
        ),
    ]
)
