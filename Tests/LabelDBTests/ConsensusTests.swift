import Foundation
import Testing
@testable import LabelDB

/// `labels consensus` (issue 13): mean and vote by hand, Dawid–Skene on planted labellers, the
/// taint and provenance of the written version.
@Suite("Label consensus")
struct ConsensusTests {
    func store(_ dir: TemporaryDirectory, n: Int, classes: Int = 3) throws -> Store {
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: (0..<classes).map { "k\($0)" }))
        try store.write(clearance: .all) { tx in
            for id in UInt64(1)...UInt64(n) { try tx.put(Sample(id: id, embedding: [Float(id), 1])) }
        }
        return store
    }

    func consensusRows(_ store: Store, _ name: String) throws -> [UInt64: [Float]] {
        try store.read(clearance: .all) { tx in
            var rows: [UInt64: [Float]] = [:]
            try tx.forEachLabel(in: LabelSetReference(name: name)) { id, label in rows[id] = label.soft; return true }
            return rows
        }
    }

    @Test("mean and vote, by hand; a sample only one source labels still gets a label")
    func meanAndVote() throws {
        let dir = TemporaryDirectory("consensus")
        let store = try store(dir, n: 3)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.soft([0.6, 0.4, 0, 0.2, 0.2, 0.6]), ids: [1, 2], into: "A", codec: .denseF32, agent: "a")
            try tx.importLabels(.hard([1, 2, 0]), ids: [1, 2, 3], into: "B", agent: "b")
            _ = try tx.consensus(into: "M", from: [LabelSetReference(name: "A"), LabelSetReference(name: "B")], method: .mean, weights: [3, 1], codec: .denseF32, agent: "t")
            _ = try tx.consensus(into: "V", from: [LabelSetReference(name: "A"), LabelSetReference(name: "B")], method: .vote, codec: .denseF32, agent: "t")
        }
        let mean = try consensusRows(store, "M")
        // Sample 1: (3·(0.6, 0.4, 0) + (0, 1, 0)) / 4; sample 3: only B.
        for (got, want) in zip(mean[1]!, [Float(0.45), 0.55, 0]) { #expect(abs(got - want) < 1e-6) }
        for (got, want) in zip(mean[2]!, [Float(0.15), 0.15, 0.7]) { #expect(abs(got - want) < 1e-6) }
        #expect(mean[3] == [1, 0, 0])
        let vote = try consensusRows(store, "V")
        // Sample 1: A votes k0 (confidence 0.6), B k1 (1.0): a tie, won by the surer voter, B.
        #expect(vote[1]!.indices.max { vote[1]![$0] < vote[1]![$1] } == 1 && abs(vote[1]![0] - 0.5) < 1e-2)
        // Sample 2: both vote k2.
        #expect(vote[2] == [0, 0, 1])
    }

    @Test("Dawid–Skene recovers planted labeller accuracies and beats the majority vote")
    func dawidSkene() throws {
        var rng = SeededGenerator(seed: 7)
        let n = 600, c = 4, accuracy = [0.9, 0.65, 0.55]
        let truth = (0..<n).map { _ in Int.random(in: 0..<c, using: &rng) }
        // Each labeller is right with its accuracy, else says one fixed wrong class (a biased confusion).
        let votes = accuracy.enumerated().map { s, a in truth.map { t in Double.random(in: 0..<1, using: &rng) < a ? t : (t + 1 + s) % c } }
        let dir = TemporaryDirectory("consensus")
        let store = try store(dir, n: n, classes: c)
        defer { store.close() }
        let ids = (1...UInt64(n)).map { $0 }
        let report = try store.write(clearance: .all) { tx -> ConsensusReport in
            for (s, v) in votes.enumerated() { try tx.importLabels(.hard(v), ids: ids, into: "L\(s)", agent: "l\(s)") }
            _ = try tx.consensus(into: "V", from: (0..<3).map { LabelSetReference(name: "L\($0)") }, method: .vote, agent: "t")
            return try tx.consensus(into: "DS", from: (0..<3).map { LabelSetReference(name: "L\($0)") }, method: .dawidSkene, agent: "t")
        }
        let estimated = try #require(report.sourceAccuracy)
        for (e, a) in zip(estimated, accuracy) { #expect(abs(e - a) < 0.06, "estimated \(estimated), planted \(accuracy)") }
        func correct(_ name: String) throws -> Int {
            let rows = try consensusRows(store, name)
            return (0..<n).filter { i in let p = rows[UInt64(i + 1)]!; return p.indices.max { p[$0] < p[$1] || (p[$0] == p[$1] && $0 > $1) } == truth[i] }.count
        }
        let (ds, vote) = (try correct("DS"), try correct("V"))
        #expect(ds > vote, "Dawid–Skene \(ds) vs vote \(vote) of \(n)")
        #expect(report.iterations! >= 2)
    }

    @Test("the written version carries the secrecy of the sources used, no integrity, and names them in its provenance")
    func taintAndProvenance() throws {
        let dir = TemporaryDirectory("consensus")
        let store = try store(dir, n: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard([0, 1, 2, 0]), ids: [1, 2, 3, 4], into: "H", agent: "h", source: TaintLabel(secrecy: [], integrity: ["reviewed"]), privileges: ["reviewed"])
            try tx.importLabels(.hard([0, 1]), ids: [1, 2], into: "T", agent: "t", source: TaintLabel(secrecy: ["licensed"], integrity: []))
        }
        // Under the public clearance the licensed rows are not seen: nothing licensed is used.
        let open = try store.write(clearance: .public) { tx in
            try tx.consensus(into: "C", from: [LabelSetReference(name: "H"), LabelSetReference(name: "T")], method: .mean, agent: "x")
        }
        #expect(open.version.sourceLabel == .public)
        let all = try store.write(clearance: .all) { tx in
            try tx.consensus(into: "C2", from: [LabelSetReference(name: "H"), LabelSetReference(name: "T")], method: .mean, agent: "x")
        }
        #expect(all.version.sourceLabel == TaintLabel(secrecy: ["licensed"], integrity: []))
        #expect(try store.read(clearance: .public) { try $0.label(of: 3, in: LabelSetReference(name: "C2")) } == nil)
        #expect(all.sources == ["H@1", "T@1"])
        // Bad requests write nothing.
        #expect(throws: ConsensusError.self) {
            try store.write(clearance: .all) { tx in _ = try tx.consensus(into: "X", from: [LabelSetReference(name: "H"), LabelSetReference(name: "T")], method: .mean, weights: [0, 0], agent: "x") }
        }
        #expect(throws: ConsensusError.self) {
            try store.write(clearance: .all) { tx in
                _ = try tx.consensus(into: "X", from: [LabelSetReference(name: "H"), LabelSetReference(name: "T")], method: .dawidSkene, agent: "x", tolerance: 1e-12, maxIterations: 1)
            }
        }
        #expect(try store.read(clearance: .all) { try $0.labelSet(named: "X") } == nil)
        // The CLI logs the sources, the method and the weights.
        let cli = try runCLI(["labels", "consensus", dir.file("store"), "C3", "--from", "H,T", "--method", "vote", "--weights", "T=2", "--clearance", "all", "--format", "json"])
        #expect(cli.status == 0, "\(cli.stderr)")
        try runCLI(["provenance", "export", dir.file("store"), "--out", dir.file("prov.json")])
        let prov = try String(contentsOfFile: dir.file("prov.json"), encoding: .utf8)
        #expect(prov.contains("label consensus") && prov.contains("H@1=1.0,T@1=2.0"))
    }

    @Test("Dawid–Skene output depends on every sample: its version carries the secrecy of every row used, samples included; zero weights label nothing")
    func dawidSkeneTaint() throws {
        let dir = TemporaryDirectory("consensus")
        let store = try store(dir, n: 6)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard([0, 1, 2, 0, 1, 2]), ids: Array(1...6), into: "A", agent: "a")
            try tx.importLabels(.hard([0, 1, 2, 0, 2, 2]), ids: Array(1...6), into: "B", agent: "b")
            try tx.importLabels(.hard([1]), ids: [1], into: "Z", agent: "z")
            _ = try tx.relabel([6], TaintChange(addSecrecy: ["pii"]), agent: "x")
        }
        let ds = try store.write(clearance: .all) { tx in
            try tx.consensus(into: "D", from: [LabelSetReference(name: "A"), LabelSetReference(name: "B")], method: .dawidSkene, agent: "x")
        }
        #expect(ds.version.sourceLabel.secrecy == .tags(["pii"]))
        // A public reader sees none of it: sample 2's posterior depends on sample 6's votes.
        #expect(try store.read(clearance: .public) { try $0.label(of: 2, in: LabelSetReference(name: "D")) } == nil)
        let mean = try store.write(clearance: .all) { tx in
            try tx.consensus(into: "M", from: [LabelSetReference(name: "A"), LabelSetReference(name: "Z")], method: .mean, weights: [0, 1], agent: "x")
        }
        #expect(mean.version.rows == 1 && mean.version.sourceLabel == .public)
        #expect(throws: ConsensusError.self) {
            try store.write(clearance: .all) { tx in
                _ = try tx.consensus(into: "X", from: [LabelSetReference(name: "A"), LabelSetReference(name: "B")], method: .dawidSkene, weights: [1, 1], agent: "x")
            }
        }
    }
}
