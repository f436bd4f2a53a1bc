import Foundation
import Testing
@testable import LabelDB

/// The per-view CLI contract (issue 14): `labels import --views`, `labels export --views-out`,
/// `get`, `labels show`, the query's `views` and `any_view`, and bad views files.
@Suite("Per-view labels CLI")
struct ViewCLITests {
    /// A store of samples 1…5 (classes cat, dog, bird), a views file of `rows` (id, view) with
    /// extras on view 5, and matching top-2 input: class (view mod 3) first.
    func prepared(_ rows: [(UInt64, Int)]) throws -> (TemporaryDirectory, String) {
        let dir = TemporaryDirectory("views-cli")
        let store = try initCLIStore(dir, dimension: 4)
        try writeImportFiles(dir, samples: randomSamples(count: 5, dimension: 4, seed: 2, ids: [1, 2, 3, 4, 5]), dimension: 4)
        #expect(try runCLI(["import", store, "--embeddings", dir.file("emb.npy"), "--ids", dir.file("ids.npy")]).status == 0)
        try writeViewInput(dir, rows)
        return (dir, store)
    }

    func writeViewInput(_ dir: TemporaryDirectory, _ rows: [(UInt64, Int)], prefix: String = "") throws {
        try NumPyArray.write(rows.map(\.0), to: dir.file(prefix + "vids.npy"))
        try NumPyArray.write(rows.flatMap { [Int32($0.1 % 3), Int32(($0.1 + 1) % 3)] }, shape: [rows.count, 2], to: dir.file(prefix + "tc.npy"))
        try NumPyArray.write(rows.flatMap { _ in [Float(0.75), 0.125] }, shape: [rows.count, 2], to: dir.file(prefix + "tp.npy"))
        try rows.enumerated().map { i, row in
            let extra = row.1 == 5 ? #", "scale": [0.08, 1], "note": "x""# : ""
            return #"{"view": \#(row.1), "crop": [0.125, 0.25, 0.875, 0.5], "flip": \#(row.1 % 2 == 1), "epoch": \#(row.1 / 2), "seed": \#(1000 + i)\#(extra)}"# + "\n"
        }.joined().write(toFile: dir.file(prefix + "views.jsonl"), atomically: false, encoding: .utf8)
    }

    func importViews(_ store: String, _ dir: TemporaryDirectory, set: String = "fkd", prefix: String = "", extra: [String] = []) throws -> CLIResult {
        try runCLI(["labels", "import", store, set, "--topk-classes", dir.file(prefix + "tc.npy"), "--topk-probs", dir.file(prefix + "tp.npy"),
                    "--ids", dir.file(prefix + "vids.npy"), "--views", dir.file(prefix + "views.jsonl"), "--agent", "teacher"] + extra)
    }

    @Test("import, export with --views-out, import the export again: every field of every view round-trips")
    func roundTrip() throws {
        let rows: [(UInt64, Int)] = [(3, 5), (1, 0), (1, 2), (3, 1), (1, 1), (4, 0)]
        let (dir, store) = try prepared(rows)
        let imported = try importViews(store, dir, extra: ["--format", "json"])
        #expect(imported.status == 0, "\(imported.stderr)")
        let record = try JSONValue.parse(imported.stdout)
        #expect(record["rows"] == .int(3) && record["views"] == .int(6) && record["labelled"] == .int(3))

        let exported = try runCLI(["labels", "export", store, "fkd", "--out", dir.file("p.npy"), "--ids-out", dir.file("i.npy"), "--views-out", dir.file("v.jsonl")])
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(try NumPyArray.read(dir.file("i.npy")).ids() == [1, 1, 1, 3, 3, 4])
        let lines = try JSONLines.read(dir.file("v.jsonl"))
        let given = try JSONLines.read(dir.file("views.jsonl"))
        // (id, view) order: the input's rows sorted, each line equal to its input line as JSON.
        let order = rows.indices.sorted { (rows[$0].0, rows[$0].1) < (rows[$1].0, rows[$1].1) }
        #expect(lines == order.map { given[$0] })
        let p = try NumPyArray.read(dir.file("p.npy"))
        #expect(p.shape == [6, 3])
        let probabilities = try p.floats()
        for (row, input) in order.enumerated() {
            let top = rows[input].1 % 3
            #expect(abs(probabilities[row * 3 + top] - 0.75) < 1e-3)
        }
        // The export, imported into a new set, reads the same.
        try NumPyArray.write(try NumPyArray.read(dir.file("i.npy")).ids(), to: dir.file("again-ids.npy"))
        #expect(try runCLI(["labels", "import", store, "again", "--soft", dir.file("p.npy"), "--ids", dir.file("again-ids.npy"), "--views", dir.file("v.jsonl"), "--codec", "topk:2:f16"]).status == 0)
        #expect(try runCLI(["labels", "export", store, "again", "--out", dir.file("p2.npy"), "--views-out", dir.file("v2.jsonl")]).status == 0)
        #expect(try JSONLines.read(dir.file("v2.jsonl")) == lines)
        #expect(try NumPyArray.read(dir.file("p2.npy")).floats() == probabilities)
        #expect(try runCLI(["verify", store]).status == 0)
    }

    @Test("get shows every view with its crop; show reports views per sample; list marks the set")
    func getShowList() throws {
        let (dir, store) = try prepared([(1, 0), (1, 1), (1, 2), (3, 5), (4, 0)])
        #expect(try importViews(store, dir).status == 0)
        let get = try runCLI(["get", store, "1", "--labels", "fkd", "--format", "json"])
        let views = try #require(try JSONValue.parse(get.stdout)["labels"]?["fkd"]?["views"]?.arrayValue)
        #expect(views.map { $0["view"] } == [.int(0), .int(1), .int(2)])
        #expect(views[1]["crop"] == [0.125, 0.25, 0.875, 0.5] && views[1]["flip"] == .bool(true) && views[1]["seed"] == .int(1001))
        #expect(views[2]["top"]?.arrayValue?.first?["name"] == .string("bird"))
        let text = try runCLI(["get", store, "3", "--labels", "fkd"]).stdout
        #expect(text.contains("1 view\n") && text.contains("view 5 crop [0.125, 0.25, 0.875, 0.5] flipped epoch 2 seed 1003"))
        let show = try JSONValue.parse(try runCLI(["labels", "show", store, "fkd", "--format", "json"]).stdout)
        #expect(show["per_view"] == .bool(true))
        #expect(show["views_per_sample"] == ["samples": 3, "min": 1, "max": 3, "mean": .double(5.0 / 3), "views": 5])
        #expect(try runCLI(["labels", "show", store, "fkd"]).stdout.contains("views per sample: min 1, mean 1.67, max 3"))
        #expect(try runCLI(["labels", "list", store]).stdout.contains("(per view)"))
        let audit = try JSONValue.parse(try runCLI(["audit", store, "1", "--format", "json"]).stdout)
        #expect(audit["labels"]?["fkd"]?["views"]?.arrayValue?.map { $0["view"] } == [.int(0), .int(1), .int(2)])
        #expect(audit["labels"]?["fkd"]?["top"] == nil)
        #expect(try runCLI(["audit", store, "3"]).stdout.contains("): 1 view\n"))
    }

    @Test("query: label(S).views and label(S).any_view.top1; per-sample terms on a per-view set are refused")
    func query() throws {
        let (dir, store) = try prepared([(1, 0), (1, 1), (2, 2), (3, 0), (3, 4)])
        #expect(try importViews(store, dir).status == 0)
        func ids(_ filter: String) throws -> String { try runCLI(["query", store, filter]).stdout.split(separator: "\n").joined(separator: " ") }
        #expect(try ids("label(fkd).views >= 2") == "1 3")
        #expect(try ids("label(fkd).any_view.top1 = 'dog'") == "1 3")      // views 1 and 4: class 1
        #expect(try ids("label(fkd).any_view.top1 = 'bird'") == "2")
        #expect(try ids("label(fkd).any_view.prob('cat') > 0.5 and not label(fkd).any_view.top1 = 'dog'") == "")
        #expect(try ids("label(fkd).any_view.prob('bird') > 0.5") == "2")
        #expect(try ids("label(fkd).any_view.confidence > 0.7") == "1 2 3")
        #expect(try ids("label(fkd).any_view.confidence > 0.8") == "")
        // A visible sample without a row has no views.
        #expect(try ids("label(fkd).views = 0") == "4 5")
        #expect(try ids("not label(fkd).any_view.top1 = 'cat'") == "2 4 5")
        // Against another set's top-1: any view equal to it, any view different from it.
        try NumPyArray.write([Int32]([1, 2, 1, 0, 0]), shape: [5], to: dir.file("plain.npy"))
        #expect(try runCLI(["labels", "import", store, "plain", "--hard", dir.file("plain.npy")]).status == 0)
        #expect(try ids("label(fkd).any_view.top1 = label(plain).top1") == "1 2 3")
        #expect(try ids("label(fkd).any_view.top1 != label(plain).top1") == "1 3")
        let refused = try runCLI(["query", store, "label(fkd).top1 = 'cat'"])
        #expect(refused.status == 2 && refused.stderr.contains("label(fkd).any_view.top1"))
        let agree = try runCLI(["labels", "agree", store, "fkd", "plain"])
        #expect(agree.status == 2 && agree.stderr.contains("per augmented view") && agree.stderr.contains("agreement"), "\(agree.stderr)")
    }

    @Test("bad views files and layouts: a clear error naming the file and line, and nothing written")
    func badInput() throws {
        let (dir, store) = try prepared([(1, 0), (1, 1)])
        #expect(try importViews(store, dir).status == 0)
        try NumPyArray.write([Int32]([0, 1]), shape: [2], to: dir.file("hard.npy"))
        try NumPyArray.write([UInt64]([1, 2]), to: dir.file("two-ids.npy"))
        #expect(try runCLI(["labels", "import", store, "plain", "--hard", dir.file("hard.npy"), "--ids", dir.file("two-ids.npy")]).status == 0)
        let before = fileBytes(store + "/data.mdb")
        func refused(_ lines: [String], set: String = "fkd", _ fragment: String, ids: [UInt64] = [1, 2]) throws {
            try NumPyArray.write(ids, to: dir.file("bad-ids.npy"))
            try NumPyArray.write([Int32](repeating: 0, count: ids.count), shape: [ids.count], to: dir.file("bad-hard.npy"))
            try (lines.joined(separator: "\n") + "\n").write(toFile: dir.file("bad.jsonl"), atomically: false, encoding: .utf8)
            let result = try runCLI(["labels", "import", store, set, "--hard", dir.file("bad-hard.npy"), "--ids", dir.file("bad-ids.npy"), "--views", dir.file("bad.jsonl")])
            #expect(result.status == 2 && result.stderr.contains(fragment), "\(lines): \(result.stderr)")
        }
        let ok = #"{"view": 0, "crop": [0, 0, 1, 1]}"#
        try refused([ok, ok], "view 0 of id 1 appears twice", ids: [1, 1])
        try refused([ok, #"{"view": 1, "crop": [0, 0, 1.5, 1]}"#], "line 2")
        try refused([ok, #"{"view": 1, "crop": [0.5, 0, 0.5, 1]}"#], "zero area")
        try refused([ok, #"{"view": 1, "crop": [0, 0, 1]}"#], "four numbers")
        try refused([ok, #"{"crop": [0, 0, 1, 1]}"#], "missing member 'view'")
        try refused([ok, #"{"view": -1, "crop": [0, 0, 1, 1]}"#], "view number -1")
        try refused([ok, #"{"view": 1, "crop": [0, 0, 1, 1], "flip": 1}"#], "'flip' must be true or false")
        try refused([ok], "1 views for 2 label rows")
        try refused([ok, ok], set: "plain", "holds one label per sample")
        let noViews = try runCLI(["labels", "import", store, "fkd", "--hard", dir.file("hard.npy"), "--ids", dir.file("two-ids.npy")])
        #expect(noViews.status == 2 && noViews.stderr.contains("needs views"))
        let viewsOut = try runCLI(["labels", "export", store, "plain", "--views-out", dir.file("x.jsonl")])
        #expect(viewsOut.status == 2 && viewsOut.stderr.contains("holds one label per sample"))
        #expect(fileBytes(store + "/data.mdb") == before)
    }
}
