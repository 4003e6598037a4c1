// swift-tools-version:6.0
// A package of its own that uses Torus the way an application would: through a path
// dependency on the repository root and the public API of its library products.
import PackageDescription

let package = Package(
    name: "HelloTorus",
    dependencies: [
        .package(name: "Torus", path: "../.."),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "hello-torus",
            dependencies: [
                .product(name: "Torus", package: "Torus"),
                .product(name: "TorusHTTP", package: "Torus"),
                .product(name: "TorusWebSocket", package: "Torus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/HelloTorus"
        ),
    ]
)
