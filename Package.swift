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
        .library(name: "TorusHTTP", targets: ["TorusHTTP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
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
        .target(
            name: "TorusHTTP",
            dependencies: [
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Sources/TorusHTTP",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TorusHTTPTests",
            dependencies: [
                "TorusHTTP",
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Tests/TorusHTTPTests",
            swiftSettings: strict
        ),
    ]
)
