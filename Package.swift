// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Torus",
    products: [
        .library(name: "Torus", targets: ["Torus"]),
        .library(name: "TorusHTTP", targets: ["TorusHTTP"]),
        .library(name: "TorusWebSocket", targets: ["TorusWebSocket"]),
        .library(name: "TorusTLS", targets: ["TorusTLS"]),
        .executable(name: "torus-echo", targets: ["torus-echo"]),
        .executable(name: "torus-http", targets: ["torus-http"]),
        .executable(name: "torus-ws", targets: ["torus-ws"]),
        .library(name: "TorusHub", targets: ["TorusHub"]),
        .library(name: "TorusRedis", targets: ["TorusRedis"]),
        .executable(name: "torus-hub", targets: ["torus-hub"]),
        .executable(name: "torus-soak", targets: ["torus-soak"]),
        .executable(name: "torus-sim", targets: ["torus-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
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
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TorusHTTP",
            dependencies: [
                "Torus",
                "TorusTLS",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/TorusHTTP",
            swiftSettings: strict
        ),
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(
            name: "TorusWebSocket",
            dependencies: ["CZlib", "Torus", "TorusHTTP", "TorusTLS", .product(name: "Logging", package: "swift-log")],
            path: "Sources/TorusWebSocket",
            swiftSettings: strict
        ),
        .systemLibrary(
            name: "COpenSSL",
            path: "Sources/COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "TorusTLS",
            dependencies: ["COpenSSL", "Torus"],
            path: "Sources/TorusTLS",
            swiftSettings: strict
        ),
        .target(
            name: "DemoSupport",
            dependencies: ["Torus", "TorusTLS", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            path: "Demos/DemoSupport",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "torus-echo",
            dependencies: ["Torus", "TorusTLS", "DemoSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Demos/torus-echo",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "torus-http",
            dependencies: ["Torus", "TorusHTTP", "TorusTLS", "DemoSupport",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "HTTPTypes", package: "swift-http-types")],
            path: "Demos/torus-http",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "torus-ws",
            dependencies: ["Torus", "TorusHTTP", "TorusTLS", "TorusWebSocket", "DemoSupport",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Demos/torus-ws",
            swiftSettings: strict
        ),
        .target(
            name: "TorusRedis",
            dependencies: ["Torus"],
            path: "Sources/TorusRedis",
            swiftSettings: strict
        ),
        .target(
            name: "CHubMalloc",
            path: "Sources/CHubMalloc"
        ),
        .target(
            name: "TorusHub",
            dependencies: ["Torus", "TorusHTTP", "TorusTLS", "TorusWebSocket", "TorusRedis", "CHubMalloc",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            path: "Sources/TorusHub",
            resources: [.copy("Dashboard")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "torus-hub",
            dependencies: ["Torus", "TorusHub", "TorusRedis", "TorusTLS", "DemoSupport",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                           .product(name: "Logging", package: "swift-log")],
            path: "Demos/torus-hub",
            exclude: ["README.md", "handshake_cost.py", "cluster_bench.py"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "torus-soak",
            dependencies: ["Torus", "TorusHTTP", "TorusWebSocket", "TorusHub", "DemoSupport",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "HTTPTypes", package: "swift-http-types")],
            path: "Demos/torus-soak",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "torus-sim",
            dependencies: ["Torus", "TorusHub", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle")],
            path: "Demos/torus-sim",
            swiftSettings: strict
        ),
        .target(
            name: "CAllocCounter",
            path: "Benchmarks/CAllocCounter"
        ),
        .executableTarget(
            name: "torus-alloc-check",
            dependencies: ["Torus", "TorusHTTP", "TorusWebSocket", "CAllocCounter"],
            path: "Benchmarks/torus-alloc-check",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "handshake-bench",
            dependencies: ["Torus", "TorusHub"],
            path: "Benchmarks/handshake-bench",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "redis-bench",
            dependencies: ["Torus", "TorusRedis", "CAllocCounter"],
            path: "Benchmarks/redis-bench",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ws-load",
            dependencies: ["Torus", "TorusTLS", "TorusWebSocket"],
            path: "Benchmarks/ws-load",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "http-parse-bench",
            dependencies: ["TorusHTTP"],
            path: "Benchmarks/http-parse-bench",
            swiftSettings: strict
        ),
        .target(
            name: "CChildProcess",
            path: "Tests/CChildProcess"
        ),
        .target(
            name: "TorusTestSupport",
            dependencies: ["Torus", "CChildProcess"],
            path: "Tests/TorusTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TorusTests",
            dependencies: ["Torus", "TorusTestSupport", "CLiburing", "torus-echo",
                           .product(name: "MetricsTestKit", package: "swift-metrics")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TorusHTTPTests",
            dependencies: [
                "TorusHTTP",
                "TorusTestSupport",
                "torus-http",
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Tests/TorusHTTPTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TorusWebSocketTests",
            dependencies: ["TorusWebSocket", "CZlib", "TorusTestSupport", "torus-ws"],
            path: "Tests/TorusWebSocketTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TorusTLSTests",
            dependencies: ["TorusTLS", "COpenSSL", "Torus", "TorusHTTP", "TorusWebSocket", "TorusHub",
                           "TorusTestSupport", "torus-echo", "torus-http", "torus-ws", "torus-hub"],
            path: "Tests/TorusTLSTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TorusRedisTests",
            dependencies: ["TorusRedis", "Torus", "TorusTestSupport"],
            path: "Tests/TorusRedisTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TorusHubTests",
            dependencies: ["TorusHub", "TorusHTTP", "TorusWebSocket", "TorusRedis", "TorusTestSupport", "torus-hub", "torus-sim"],
            path: "Tests/TorusHubTests",
            swiftSettings: strict
        ),
    ]
)

// The sanitizer runs (scripts/test.sh, scripts/tsan.sh) build into their own scratch
// paths and run only some test targets: TORUS_TEST_TARGETS=A,B keeps those test targets
// and what they depend on, so an AddressSanitizer build of the core tests does not
// compile the hub, swift-crypto and every demo. Unset, the package is whole.
if let only = Context.environment["TORUS_TEST_TARGETS"], !only.isEmpty {
    var keep = Set(only.split(separator: ",").map(String.init))
    var grew = true
    while grew {
        grew = false
        for target in package.targets where keep.contains(target.name) {
            for dependency in target.dependencies {
                switch dependency {
                case .targetItem(let name, _), .byNameItem(let name, _):
                    if keep.insert(name).inserted { grew = true }
                default:
                    break
                }
            }
        }
    }
    package.targets.removeAll { !keep.contains($0.name) }
    package.products = []
    // And the packages none of the kept targets uses (SwiftPM warns about those).
    var used: Set<String> = ["swift-docc-plugin"]
    for target in package.targets {
        for case .productItem(_, let name?, _, _) in target.dependencies { used.insert(name) }
    }
    package.dependencies.removeAll { dependency in
        guard case .sourceControl(_, let location, _) = dependency.kind,
              let last = location.split(separator: "/").last else { return false }
        return !used.contains(last.hasSuffix(".git") ? String(last.dropLast(4)) : String(last))
    }
}
