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

/// The library's seeded generator, under the name the tests use.
typealias SeededGenerator = SplitMix64

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

/// What a run of the `labeldb` binary printed and returned.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The `labeldb` executable built next to the test bundle.
let labeldbBinary: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    // The test runner sits in the build folder, or inside an .xctest bundle within it.
    for _ in 0..<3 {
        let candidate = dir.appendingPathComponent("labeldb").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return "labeldb"
}()

/// Runs `labeldb` with `arguments` (in `directory`, when given) and waits for it; output goes
/// through files, so a chatty child cannot block on a full pipe.
@discardableResult
func runCLI(_ arguments: [String], in directory: String? = nil, environment: [String: String] = [:]) throws -> CLIResult {
    let dir = TemporaryDirectory("cli-out")
    let out = dir.file("stdout"), err = dir.file("stderr")
    _ = FileManager.default.createFile(atPath: out, contents: nil)
    _ = FileManager.default.createFile(atPath: err, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: labeldbBinary)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    process.standardOutput = FileHandle(forWritingAtPath: out)
    process.standardError = FileHandle(forWritingAtPath: err)
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return CLIResult(
        status: process.terminationStatus,
        stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

/// The bytes of a file, to show that a failed command left it exactly as it was.
func fileBytes(_ path: String) -> Data {
    FileManager.default.contents(atPath: path) ?? Data()
}

/// Writes the files of an import: embeddings, ids, metadata JSONL and payload JSONL.
func writeImportFiles(_ dir: TemporaryDirectory, prefix: String = "", samples: [Sample], dimension: Int) throws {
    try NumPyArray.write(samples.flatMap(\.embedding), shape: [samples.count, dimension], to: dir.file(prefix + "emb.npy"))
    try NumPyArray.write(samples.map(\.id), to: dir.file(prefix + "ids.npy"))
    try samples.map { JSONValue.object($0.metadata).serialized() + "\n" }.joined()
        .write(toFile: dir.file(prefix + "meta.jsonl"), atomically: false, encoding: .utf8)
    try samples.map { JSONValue.object(["base64": .string(Data($0.payload).base64EncodedString())]).serialized() + "\n" }.joined()
        .write(toFile: dir.file(prefix + "payloads.jsonl"), atomically: false, encoding: .utf8)
}

/// Fit options for tests that need a projector, not a good one: rank 1, the closed form only.
let quickFitOptions: ProjectorFitOptions = {
    var options = ProjectorFitOptions(rank: 1)
    options.epochs = 0
    return options
}()

/// Creates a store through the CLI (`init STORE --dim D` with classes cat, dog, bird) in `dir`
/// and returns its path.
@discardableResult
func initCLIStore(_ dir: TemporaryDirectory, dimension: Int) throws -> String {
    try "cat\ndog\nbird\n".write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
    let result = try runCLI(["init", dir.file("store"), "--dim", "\(dimension)", "--classes", dir.file("classes.txt")])
    guard result.status == 0 else { throw CheckFailure(result.stderr) }
    return dir.file("store")
}

/// A test setup step that failed.
struct CheckFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
