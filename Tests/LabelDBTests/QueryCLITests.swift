import Foundation
import Testing
@testable import LabelDB

/// The query layer's CLI contract: `knn --labels` (JSON keys, flow labels, clearance),
/// `query` columns, taint in rows, `.npy` outputs, `flows_to`, and export → import keeping taint.
@Suite("Query CLI")
struct QueryCLITests {
    @Test("knn --labels gives probs, both flow labels, neighbours and witness; query rows carry taint; exports keep it")
    func knnAndQuery() throws {
        let dir = TemporaryDirectory("query-cli")
        let store = dir.file("store")
        try "cat\ndog\n".write(toFile: dir.file("classes.txt"), atomically: false, encoding: .utf8)
        #expect(try runCLI(["init", store, "--dim", "2", "--classes", dir.file("classes.txt")]).status == 0)
        // Public and licensed samples side by side near (1, 0), all labelled cat; dogs near (0, 1).
        let rows: [(UInt64, [Float], String?, [Float])] = [
            (1, [1, 0.01], nil, [0.9, 0.1]), (2, [1, 0.02], "licensed", [0.9, 0.1]), (3, [1, 0.03], nil, [0.8, 0.2]),
            (4, [1, 0.04], "licensed", [0.85, 0.15]), (5, [0.01, 1], nil, [0.1, 0.9]), (6, [0.02, 1], "licensed", [0.2, 0.8]),
        ]
        try NumPyArray.write(rows.flatMap(\.1), shape: [rows.count, 2], to: dir.file("x.npy"))
        try NumPyArray.write(rows.map(\.0), to: dir.file("ids.npy"))
        try rows.map { $0.2.map { #"{"taint": {"secrecy": ["\#($0)"]}}"# } ?? "{}" }.joined(separator: "\n")
            .write(toFile: dir.file("meta.jsonl"), atomically: false, encoding: .utf8)
        try NumPyArray.write(rows.flatMap(\.3), shape: [rows.count, 2], to: dir.file("p.npy"))
        #expect(try runCLI(["import", store, "--embeddings", dir.file("x.npy"), "--ids", dir.file("ids.npy"), "--meta", dir.file("meta.jsonl")]).status == 0)
        #expect(try runCLI(["labels", "import", store, "teacher", "--soft", dir.file("p.npy"), "--ids", dir.file("ids.npy"), "--clearance", "all", "--codec", "dense:f32"]).status == 0)
        try NumPyArray.write([Float(1), 0], shape: [1, 2], to: dir.file("q.npy"))

        let knn = try runCLI(["knn", store, "--query", dir.file("q.npy"), "--k", "2", "--labels", "teacher", "--clearance", "all", "--format", "json"])
        #expect(knn.status == 0, "\(knn.stderr)")
        let result = try JSONValue.parse(knn.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        for key in ["probs", "label", "conservative_label", "neighbors", "witness"] { #expect(result[key] != nil, "missing \(key)") }
        #expect(result["conservative_label"] == ["secrecy": ["licensed"], "integrity": []])
        #expect(result["label"] == ["secrecy": [], "integrity": []])
        #expect(result["witness"] == [1, 3])
        #expect(result["neighbors"]?.arrayValue?.compactMap { $0["id"] } == [1, 3])
        let probs = result["probs"]?.arrayValue?.compactMap(\.doubleValue) ?? []
        #expect(probs.count == 2 && abs(probs[0] - 0.85) < 0.01)
        // Conservative only; and a public reader never sees licensed neighbours at all.
        let conservative = try JSONValue.parse(try runCLI(["knn", store, "--query", dir.file("q.npy"), "--k", "2", "--labels", "teacher", "--clearance", "all", "--flow", "conservative", "--format", "json"]).stdout)
        #expect(conservative["label"] == conservative["conservative_label"] && conservative["witness"] == [1, 2])
        let publicKNN = try JSONValue.parse(try runCLI(["knn", store, "--query", dir.file("q.npy"), "--k", "3", "--format", "json"]).stdout)
        #expect(publicKNN["neighbors"]?.arrayValue?.compactMap { $0["id"] } == [1, 3, 5])
        #expect(try runCLI(["knn", store, "--query", dir.file("q.npy"), "--labels", "teacher", "--flow", "generous"]).status == 2)

        // Query rows: taint by default, chosen columns, flows_to, .npy outputs.
        let query = try runCLI(["query", store, "flows_to('secrecy=licensed') and label(teacher).top1 = 'cat'", "--labels", "teacher",
                                "--clearance", "all", "--format", "json", "--ids-out", dir.file("qi.npy"), "--labels-out", dir.file("qp.npy")])
        #expect(query.status == 0, "\(query.stderr)")
        let lines = query.stdout.split(separator: "\n").map { try? JSONValue.parse(String($0)) }
        #expect(lines.compactMap { $0?["id"] } == [1, 2, 3, 4])
        #expect(lines[1]?["taint"] == ["secrecy": ["licensed"], "integrity": []])
        #expect(lines[0]?["labels"]?["teacher"]?["top1"] == "cat")
        #expect(try NumPyArray.read(dir.file("qi.npy")).ids() == [1, 2, 3, 4])
        #expect(try NumPyArray.read(dir.file("qp.npy")).shape == [4, 2])
        let columns = try runCLI(["query", store, "id >= 5", "--columns", "id,embedding", "--format", "json"])
        #expect(try JSONValue.parse(columns.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) == ["id": 5, "embedding": [0.01, 1]])
        #expect(try runCLI(["query", store, "id >= 0", "--columns", "id,secret"]).status == 2)
        #expect(try runCLI(["query", store, "flows_to('secrecy=nope')"]).status == 2)

        // Export with the full clearance, import into a new store: taint labels survive.
        #expect(try runCLI(["export", store, "--clearance", "all", "--embeddings-out", dir.file("e.npy"), "--ids-out", dir.file("e-ids.npy"), "--meta-out", dir.file("e.jsonl")]).status == 0)
        let copy = dir.file("copy")
        #expect(try runCLI(["init", copy, "--dim", "2", "--classes", dir.file("classes.txt")]).status == 0)
        #expect(try runCLI(["import", copy, "--embeddings", dir.file("e.npy"), "--ids", dir.file("e-ids.npy"), "--meta", dir.file("e.jsonl")]).status == 0)
        let copied = try JSONValue.parse(try runCLI(["get", copy, "2", "--format", "json", "--clearance", "all"]).stdout)
        #expect(copied["taint"] == ["secrecy": ["licensed"], "integrity": []] && copied["metadata"] == .object([:]))
    }
}
