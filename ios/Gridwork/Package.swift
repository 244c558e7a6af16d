// swift-tools-version:5.9
//
// The Gridwork core for iOS apps. Before Xcode can build this package, run
// ios/build-xcframework on a Mac: it builds the Rust library for the device
// and the simulators and writes the two generated parts this manifest
// points at (neither is committed):
//   build/GridworkFFIFFI.xcframework   static library + C header + module map
//   Sources/GridworkFFI/GridworkFFI.swift   the uniffi-generated Swift API
import PackageDescription

let package = Package(
    name: "Gridwork",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "Gridwork", targets: ["Gridwork"]),
    ],
    targets: [
        // The C module `GridworkFFIFFI` the generated Swift imports. Named like
        // the xcframework and like the module in its module map: SwiftPM has
        // required the binary target's name to match its artifact.
        .binaryTarget(name: "GridworkFFIFFI", path: "build/GridworkFFIFFI.xcframework"),
        // The generated bindings (module GridworkFFI), compiled as they come:
        // uniffi's output is written for Swift 5 mode and marks its records
        // Sendable itself under a Swift 6 compiler.
        .target(
            name: "GridworkFFI",
            dependencies: ["GridworkFFIFFI"],
            path: "Sources/GridworkFFI",
            linkerSettings: [
                // A static library does not carry its link requirements: these
                // are the system frameworks the Rust dependencies call (TLS
                // verification and keys through Security, CoreFoundation,
                // proxy settings through SystemConfiguration). After a
                // dependency change compare with
                // `cargo rustc --release -p gridwork-ffi --target aarch64-apple-ios --crate-type staticlib -- --print native-static-libs`.
                .linkedFramework("Security"),
                .linkedFramework("CoreFoundation"),
                .linkedFramework("SystemConfiguration"),
            ]
        ),
        // The hand-written API app code uses (async calls, AsyncStream,
        // background sync, Keychain key). Checked for data races now, so
        // moving to Swift 6 mode later changes nothing.
        .target(
            name: "Gridwork",
            dependencies: ["GridworkFFI"],
            path: "Sources/Gridwork",
            swiftSettings: [.enableExperimentalFeature("StrictConcurrency")]
        ),
    ]
)
