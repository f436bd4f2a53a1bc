import Foundation
import Testing
@testable import LabelDB

/// The label-set CLI contract: a teacher's probabilities into topk:5:f16, show, export,
/// a corrected re-import, diff, and bad input.
@Suite("Labels CLI")
struct LabelCLITests {
    /// A store with 40 samples (ids 10…49) and 20 classes, and a teacher's probabilities.
    func prepared() throws -> (TemporaryDirectory, String, [Float]) {
        let dir = TemporaryDirectory("labels-cli")
        try ((0..<20).map { "class\($0)" }.joined(separator: "\n") + "\n").write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
        let store = dir.file("store")
        #expect(try runCLI(["init", store, "--dim", "4", "--classes", dir.file("classes.txt")]).status == 0)
        try writeImportFiles(dir, samples: randomSamples(count: 40, dimension: 4, seed: 3, ids: Array(10..<50)), dimension: 4)
        #expect(try runCLI(["import", store, "--embeddings", dir.file("emb.npy"), "--ids", dir.file("ids.npy")]).status == 0)
        var rng = SeededGenerator(seed: 8)
        let p = (0..<40).flatMap { _ in randomDistribution(20, &rng) }
        try NumPyArray.write(p, shape: [40, 20], to: dir.file("teacher.npy"))
        return (dir, store, p)
    }

    @Test("import into topk:5:f16, show fidelity, export decoded labels, re-import, diff the versions")
    func teacherWorkflow() throws {
        let (dir, store, p) = try prepared()
        let imported = try runCLI(["labels", "import", store, "teacher", "--soft", dir.file("teacher.npy"), "--codec", "topk:5:f16",
                                   "--agent", "resnet50@2024-03", "--format", "json"])
        #expect(imported.status == 0, "\(imported.stderr)")
        let record = try JSONValue.parse(imported.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(record["version"] == .int(1) && record["codec"] == .string("topk:5:f16") && record["labelled"] == .int(40))
        #expect(record["fidelity"]?["bytes_per_label"] == .int(22))
        let meanKL = try #require(record["fidelity"]?["mean_kl"]?.doubleValue)
        #expect(meanKL > 0 && meanKL < 1)

        let show = try JSONValue.parse(try runCLI(["labels", "show", store, "teacher", "--format", "json"]).stdout)
        #expect(show["versions"]?.arrayValue?.first?["agent"] == .string("resnet50@2024-03"))

        #expect(try runCLI(["labels", "export", store, "teacher", "--out", dir.file("out.npy"), "--ids-out", dir.file("out-ids.npy"), "--hard-out", dir.file("hard.npy")]).status == 0)
        let decoded = try NumPyArray.read(dir.file("out.npy"))
        #expect(decoded.shape == [40, 20])
        #expect(try NumPyArray.read(dir.file("out-ids.npy")).ids() == Array(10..<50))
        let q = try decoded.floats()
        let hard = try NumPyArray.read(dir.file("hard.npy")).integers()
        for row in 0..<40 {
            let original = Array(p[(row * 20)..<(row * 20 + 20)]), back = Array(q[(row * 20)..<(row * 20 + 20)])
            #expect(kl(original, back) <= kl(original, idealTopK(original, 5)) + 1e-3)
            #expect(Int(hard[row]) == back.indices.max { back[$0] < back[$1] }!)
        }

        // A corrected version for five samples: the old version stays readable, diff shows the change.
        try NumPyArray.write([Int32]([3, 3, 3, 3, 3]), shape: [5], to: dir.file("fix.npy"))
        try NumPyArray.write([UInt64]([10, 11, 12, 13, 14]), to: dir.file("fix-ids.npy"))
        var fixed = p
        for row in 0..<5 { for j in 0..<20 { fixed[row * 20 + j] = j == 3 ? 0.9 : 0.1 / 19 } }
        try NumPyArray.write(Array(fixed[0..<100]), shape: [5, 20], to: dir.file("fixed.npy"))
        #expect(try runCLI(["labels", "import", store, "teacher", "--soft", dir.file("fixed.npy"), "--ids", dir.file("fix-ids.npy")]).status == 0)
        let diff = try JSONValue.parse(try runCLI(["labels", "diff", store, "teacher@1", "teacher@2", "--format", "json"]).stdout)
        let changedCount = (0..<5).filter { row in p[(row * 20)..<(row * 20 + 20)].indices.max { p[$0] < p[$1] }! - row * 20 != 3 }.count
        #expect(diff["counts"]?["changed"] == .int(Int64(changedCount)))
        #expect(diff["counts"]?["unchanged"] == .int(Int64(40 - changedCount)))
        let get = try JSONValue.parse(try runCLI(["get", store, "10", "--labels", "teacher@2", "--format", "json"]).stdout)
        #expect(get["labels"]?["teacher"]?["top"]?.arrayValue?.first?["name"] == .string("class3"))
        let old = try JSONValue.parse(try runCLI(["get", store, "10", "--labels", "teacher@1", "--format", "json"]).stdout)
        #expect(old["labels"]?["teacher"]?["row_version"] == .int(1))
        #expect(try runCLI(["labels", "import", store, "teacher", "--soft", dir.file("fixed.npy"), "--ids", dir.file("fix-ids.npy"), "--codec", "dense:f16"]).status == 2)
    }

    @Test("bad label input gets exit code 2, a clear error, and leaves the store unchanged")
    func badInput() throws {
        let (dir, store, p) = try prepared()
        let before = fileBytes(store + "/data.mdb")
        var negative = p; negative[45] = -0.2
        try NumPyArray.write(negative, shape: [40, 20], to: dir.file("negative.npy"))
        var nan = p; nan[100] = .nan
        try NumPyArray.write(nan, shape: [40, 20], to: dir.file("nan.npy"))
        var unnormalised = p; unnormalised[0] += 0.3
        try NumPyArray.write(unnormalised, shape: [40, 20], to: dir.file("sum.npy"))
        try NumPyArray.write(Array(p[0..<(40 * 19)]), shape: [40, 19], to: dir.file("classes19.npy"))
        try NumPyArray.write([Int32](repeating: 20, count: 40), shape: [40], to: dir.file("hard-range.npy"))
        try NumPyArray.write(Array(10..<50).map { $0 == 30 ? UInt64(999) : UInt64($0) }, to: dir.file("unknown-ids.npy"))
        try "[\"class1\"]\n[\"nope\"]\n".write(toFile: dir.file("multi.jsonl"), atomically: false, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--soft", dir.file("negative.npy")], "row 2: probability of class 5 is -0.2"),
            (["--soft", dir.file("nan.npy")], "row 5: probability of class 0 is NaN"),
            (["--soft", dir.file("sum.npy")], "row 0: probabilities sum to"),
            (["--soft", dir.file("classes19.npy")], "the store has 20 classes"),
            (["--hard", dir.file("hard-range.npy")], "class 20 is out of range"),
            (["--soft", dir.file("teacher.npy"), "--ids", dir.file("unknown-ids.npy")], "id 999 is not a sample"),
            (["--soft", dir.file("teacher.npy"), "--codec", "topk:21:f16"], "K = 21 is larger than the 20 classes"),
            (["--soft", dir.file("teacher.npy"), "--codec", "topk:0:f16"], "K must be at least 1"),
            (["--soft", dir.file("teacher.npy"), "--codec", "gzip"], "invalid codec"),
            (["--multi", dir.file("multi.jsonl")], "unknown class name 'nope'"),
            (["--hard", dir.file("hard-range.npy"), "--soft", dir.file("teacher.npy")], "exactly one of"),
        ]
        for (args, fragment) in cases {
            let result = try runCLI(["labels", "import", store, "t"] + args)
            #expect(result.status == 2, "\(args): \(result.stderr)")
            #expect(result.stderr.contains(fragment), "expected '\(fragment)' in: \(result.stderr)")
            #expect(fileBytes(store + "/data.mdb") == before)
        }
        #expect(try runCLI(["labels", "import", store, "t", "--soft", dir.file("sum.npy"), "--normalize"]).status == 0)
        let missing = try runCLI(["labels", "show", store, "t@5"])
        #expect(missing.status == 1 && missing.stderr.contains("has no version 5"))
        #expect(try runCLI(["labels", "show", store, "nothing"]).status == 1)
    }
}
