// swift-tools-version:6.0
// LabelDB: an embedded store for labelled machine-learning corpora, on LMDB.
import PackageDescription

let package = Package(
    name: "LabelDB",
    products: [
        .library(name: "LabelDB", targets: ["LabelDB"]),
        .executable(name: "labeldb", targets: ["labeldb"]),
        // The C API (include: Sources/CLabelDB/include/labeldb.h), which the Python package loads.
        .library(name: "LabelDBC", type: .dynamic, targets: ["LabelDBC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C libraries come from Debian's -dev packages through small module maps; nothing is vendored.
        .systemLibrary(name: "CLMDB", path: "Sources/CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CXXHash", path: "Sources/CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        // Numeric kernels compiled per CPU (AVX-512, AVX2, baseline) and chosen at load time.
        .target(name: "CLabelDBKernels", path: "Sources/CLabelDBKernels"),
        .target(name: "LabelDB", dependencies: ["CLMDB", "COpenBLAS", "CXXHash", "CLabelDBKernels"]),
        .target(name: "CLabelDB", path: "Sources/CLabelDB"),
        .target(name: "LabelDBC", dependencies: ["LabelDB", "CLabelDB"]),
        .executableTarget(
            name: "labeldb",
            dependencies: ["LabelDB", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Benchmarks live under Tools/ so the library never depends on them.
        .executableTarget(name: "labeldb-bench", dependencies: ["LabelDB", "CLMDB", "CXXHash", "COpenBLAS"], path: "Tools/Benchmarks"),
        .executableTarget(name: "labeldb-datagen", dependencies: ["LabelDB"], path: "Tools/DataGen"),
        .testTarget(
            name: "LabelDBTests", dependencies: ["LabelDB", "CLMDB", "labeldb"],
            // Golden stores are read through #filePath, not bundled.
            exclude: ["Fixtures"]
        ),
    ]
)
