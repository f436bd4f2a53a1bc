import Foundation
import Testing
@testable import LabelDB

/// The projector CLI contract: heads import, projector fit/show/list, labels export --regen, get --regen.
@Suite("Projector CLI")
struct ProjectorCLITests {
    @Test("fit from a teacher's label set with a bound, show it, and read labels that meet the bound")
    func fitShowRegenerate() throws {
        let dir = TemporaryDirectory("projector-cli")
        let problem = ProjectorProblem(n: 400, rank: 3, headScale: 1, seed: 21)
        try ((0..<problem.c).map { "k\($0)" }.joined(separator: "\n") + "\n").write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
        let store = dir.file("store")
        #expect(try runCLI(["init", store, "--dim", "\(problem.d)", "--classes", dir.file("classes.txt")]).status == 0)
        try NumPyArray.write(problem.x, shape: [problem.n, problem.d], to: dir.file("x.npy"))
        try NumPyArray.write((1...UInt64(problem.n)).map { $0 }, to: dir.file("ids.npy"))
        try NumPyArray.write(problem.p, shape: [problem.n, problem.c], to: dir.file("p.npy"))
        try NumPyArray.write(problem.head, shape: [problem.d, problem.c], to: dir.file("w0.npy"))
        try NumPyArray.write(Array(problem.head.prefix(problem.d * 5)), shape: [problem.d, 5], to: dir.file("bad-head.npy"))
        #expect(try runCLI(["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids.npy")]).status == 0)
        #expect(try runCLI(["labels", "import", store, "teacher", "--soft", dir.file("p.npy"), "--codec", "dense:f32", "--normalize"]).status == 0)
        #expect(try runCLI(["heads", "import", store, "w0", dir.file("w0.npy")]).status == 0)
        let badHead = try runCLI(["heads", "import", store, "bad", dir.file("bad-head.npy")])
        #expect(badHead.status == 2 && badHead.stderr.contains("needs \(problem.d) × \(problem.c)"))

        let fit = try runCLI(["projector", "fit", store, "hello", "--from", "teacher", "--rank", "1", "--head", "w0", "--holdout", "0.25",
                              "--seed", "3", "--max-kl", "0.01", "--top1", "--epochs", "2", "--format", "json"])
        #expect(fit.status == 0, "\(fit.stderr)")
        let record = try JSONValue.parse(fit.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(record["version"] == .int(1) && record["rank"] == .int(1) && record["holdout_rows"] == .int(100))
        #expect(record["head"] == .string("w0") && record["source"] == .string("teacher@1"))
        let corrections = try #require(record["corrections"]?.doubleValue)
        let show = try JSONValue.parse(try runCLI(["projector", "show", store, "hello@1", "--format", "json"]).stdout)
        #expect(show["corrections"]?.doubleValue == corrections)

        let export = try runCLI(["labels", "export", store, "--regen", "hello", "--out", dir.file("r.npy"), "--ids-out", dir.file("r-ids.npy")])
        #expect(export.status == 0, "\(export.stderr)")
        #expect(export.stdout.contains("\(Int(corrections)) corrected"))
        let q = try NumPyArray.read(dir.file("r.npy")).floats()
        #expect(try NumPyArray.read(dir.file("r-ids.npy")).ids() == (1...UInt64(problem.n)).map { $0 })
        for row in 0..<problem.n {
            let p = Array(problem.p[(row * problem.c)..<((row + 1) * problem.c)])
            let r = Array(q[(row * problem.c)..<((row + 1) * problem.c)])
            #expect(kl(p, r) <= 0.01 + 1e-5)
        }
        let get = try JSONValue.parse(try runCLI(["get", store, "7", "--regen", "hello", "--format", "json"]).stdout)
        let status = get["regenerated"]?["hello"]?["status"]?.stringValue
        #expect(status == "regenerated" || status == "corrected")

        #expect(try runCLI(["projector", "show", store, "nope"]).status == 1)
        #expect(try runCLI(["projector", "fit", store, "x", "--from", "teacher", "--rank", "0"]).status == 2)

        // --budget: the ranks as a comma list that may repeat; the search is in the JSON.
        let searched = try runCLI(["projector", "fit", store, "small", "--from", "teacher", "--rank", "1,2", "--rank", "3", "--budget", "100000",
                                   "--max-kl", "0.01", "--max-steps", "20", "--format", "json"])
        #expect(searched.status == 0, "\(searched.stderr)")
        let chosen = try JSONValue.parse(searched.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        let candidates = try #require(chosen["rank_search"]?["candidates"]?.arrayValue)
        #expect(candidates.compactMap { $0["rank"]?.doubleValue } == [1, 2, 3] && chosen["rank_search"]?["sample_rows"] == .int(Int64(problem.n)))
        let best = candidates.min { $0["total_bytes"]!.doubleValue! < $1["total_bytes"]!.doubleValue! }!
        #expect(chosen["rank"] == best["rank"] && chosen["total_bytes"]?.doubleValue == best["total_bytes"]?.doubleValue)
        #expect(try runCLI(["projector", "fit", store, "x", "--from", "teacher", "--rank", "1,2"]).stderr.contains("need --budget"))
        #expect(try runCLI(["projector", "fit", store, "x", "--from", "teacher", "--budget", "1000"]).status == 2)
        #expect(try runCLI(["projector", "fit", store, "x", "--from", "teacher"]).stderr.contains("--rank is required"))
        let over = try runCLI(["projector", "fit", store, "x", "--from", "teacher", "--rank", "1", "--budget", "10", "--max-kl", "0.01", "--max-steps", "5"])
        #expect(over.status == 2 && over.stderr.contains("over the budget of 10 bytes"), "\(over.stderr)")
        #expect(try runCLI(["projector", "list", store, "--format", "json"]).stdout.split(separator: "\n").count == 2)
        #expect(try runCLI(["labels", "export", store, "teacher", "--regen", "hello", "--out", dir.file("z.npy")]).status == 2)
    }
}
