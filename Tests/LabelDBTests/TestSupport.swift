import Foundation
@testable import LabelDB

/// A fresh directory under the system temporary folder, removed when the test ends.
final class TemporaryDirectory {
    let path: String

    init(_ name: String = "labeldb") {
        path = NSTemporaryDirectory() + "\(name)-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A small seeded generator (SplitMix64) so random tests are repeatable.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Makes `count` random samples of dimension `dimension`.
func randomSamples(count: Int, dimension: Int, seed: UInt64, ids: [UInt64]? = nil) -> [Sample] {
    var rng = SeededGenerator(seed: seed)
    return (0..<count).map { i in
        let id = ids?[i] ?? rng.next()
        let embedding = (0..<dimension).map { _ in Float.random(in: -1...1, using: &rng) }
        let payload = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let metadata: [String: JSONValue] = ["row": .int(Int64(i)), "source": .string(["web", "books"][i % 2])]
        return Sample(id: id, embedding: embedding, metadata: metadata, payload: payload)
    }
}

/// A store with a small schema in a fresh directory.
func makeStore(_ dir: TemporaryDirectory, dimension: Int = 8, elementType: Schema.ElementType = .f32,
               options: Store.Options = Store.Options()) throws -> Store {
    try Store.create(at: dir.file("store"), schema: Schema(dimension: dimension, elementType: elementType, classes: ["cat", "dog", "bird"]), options: options)
}
