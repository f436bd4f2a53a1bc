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
        // The tolerance decides when it stops: a loose one earlier, and a tight one with too few
        // iterations not at all.
        let loose = try store.write(clearance: .all) { tx in
            try tx.consensus(into: "DL", from: (0..<3).map { LabelSetReference(name: "L\($0)") }, method: .dawidSkene, agent: "t", tolerance: 0.05)
        }
        #expect(loose.iterations! < report.iterations!, "\(loose.iterations!) vs \(report.iterations!)")
        #expect(throws: ConsensusError.self) {
            try store.write(clearance: .all) { tx in
                _ = try tx.consensus(into: "DT", from: (0..<3).map { LabelSetReference(name: "L\($0)") }, method: .dawidSkene, agent: "t",
                                     tolerance: 1e-12, maxIterations: report.iterations!)
            }
        }
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
                _ = try tx.consensus(into: "X", from: [LabelSetReference(name: "H"), LabelSetReference(name: "T")], method: .dawidSkene, agent: "x", tolerance: 1e-12, maxIterations: 2)
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

    /// Two soft teachers over 4 classes: A is right 80% of the time everywhere, with confidence
    /// 0.6; B is right on classes 0–2, but calls every class-3 sample class 2, with confidence
    /// `bConfidence`. Truth is known for the first 20% (the reference, as set "gold").
    func badOnOneClass(_ dir: TemporaryDirectory, n: Int = 1000, bConfidence: Float = 0.9) throws -> (Store, truth: [Int]) {
        var rng = SeededGenerator(seed: 11)
        let c = 4
        let truth = (0..<n).map { _ in Int.random(in: 0..<c, using: &rng) }
        func soft(_ k: Int, _ p: Float) -> [Float] { (0..<c).map { $0 == k ? p : (1 - p) / Float(c - 1) } }
        let a = truth.flatMap { t in soft(Double.random(in: 0..<1, using: &rng) < 0.8 ? t : (t + 1) % c, 0.6) }
        let b = truth.flatMap { t in soft(t == 3 ? 2 : t, bConfidence) }
        let store = try store(dir, n: n, classes: c)
        let ids = (1...UInt64(n)).map { $0 }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.soft(a), ids: ids, into: "A", codec: .denseF32, agent: "a")
            try tx.importLabels(.soft(b), ids: ids, into: "B", codec: .denseF32, agent: "b")
            try tx.importLabels(.hard(Array(truth.prefix(n / 5))), ids: Array(ids.prefix(n / 5)), into: "gold", agent: "reviewers")
        }
        return (store, truth)
    }

    @Test("--reference: weighting each source per class by its accuracy on the reference beats the plain mean when a teacher is bad on one class",
          arguments: [(Float(0.9), ConsensusMethod.vote), (Float(0.6), ConsensusMethod.mean)])
    func referenceWeighting(bConfidence: Float, method: ConsensusMethod) throws {
        let dir = TemporaryDirectory("consensus")
        let (store, truth) = try badOnOneClass(dir, bConfidence: bConfidence)
        defer { store.close() }
        let sources = [LabelSetReference(name: "A"), LabelSetReference(name: "B")]
        try store.write(clearance: .all) { tx in _ = try tx.consensus(into: "M", from: sources, method: .mean, codec: .denseF32, agent: "t") }
        let report = try store.write(clearance: .all) { tx in
            try tx.consensus(into: "R", from: sources, method: method, reference: .set(LabelSetReference(name: "gold")), codec: .denseF32, agent: "t")
        }
        let learned = try #require(report.referenceAccuracy)
        #expect(learned.reference == "gold@1" && learned.samples == truth.count / 5)
        // B says class 2 for true 2s and 3s alike: about half right; always right on 0 and 1.
        #expect(abs(learned.accuracy(source: 1, classIndex: 2)! - 0.5) < 0.1 && learned.accuracy(source: 1, classIndex: 0) == 1)
        #expect(learned.accuracy(source: 1, classIndex: 3) == nil)
        // Outside the reference, count the samples each consensus gets right. (With B surer
        // than A, a weighted mean still follows B's confident "2": the weighted vote is the
        // Label Critic's pick.)
        func correct(_ name: String) throws -> Int {
            let rows = try consensusRows(store, name)
            return (truth.count / 5..<truth.count).filter { argmax(rows[UInt64($0 + 1)]!) == truth[$0] }.count
        }
        let (mean, weighted) = (try correct("M"), try correct("R"))
        #expect(weighted > mean + 50, "reference-weighted \(method) \(weighted) vs mean \(mean) of \(truth.count * 4 / 5)")
        // The provenance names the reference set as used, and the reference.
        let record = try store.read(clearance: .all) { try $0.provenanceRecords().last!.record }
        #expect(record.used.map(\.name) == ["A", "B", "gold"] && record.parameters["reference"] == "gold@1", "\(record)")
    }

    @Test("--reference-tag: the reference samples are those vouched for by the tag; bad references write nothing")
    func referenceTag() throws {
        let dir = TemporaryDirectory("consensus")
        let (store, truth) = try badOnOneClass(dir, n: 400)
        defer { store.close() }
        let sources = [LabelSetReference(name: "A"), LabelSetReference(name: "B")]
        // "truth" labels every sample; only the ones tagged reviewed (ids 1…40) are the reference.
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard(truth), ids: (1...UInt64(truth.count)).map { $0 }, into: "truth", agent: "oracle")
            _ = try tx.relabel(Array(1...40), TaintChange(addIntegrity: ["reviewed"]), privileges: ["reviewed"], agent: "lead")
        }
        let report = try store.write(clearance: .all) { tx in
            try tx.consensus(into: "R", from: sources, method: .vote, reference: .tagged("reviewed", set: LabelSetReference(name: "truth")), agent: "t")
        }
        #expect(report.referenceAccuracy?.samples == 40 && report.referenceAccuracy?.reference == "truth@1 tagged reviewed")
        #expect(report.referenceAccuracy!.counts.map { $0.reduce(0, +) } == [40, 40])
        // An unknown tag, a reference that labels no sample a source labels, dawid-skene with a
        // reference, and half-given options: errors, nothing written.
        for (reference, method) in [(ConsensusReference.tagged("nosuchtag", set: LabelSetReference(name: "truth")), ConsensusMethod.mean),
                                    (.set(LabelSetReference(name: "A")), .dawidSkene)] {
            #expect(throws: ConsensusError.self) { try store.write(clearance: .all) { tx in _ = try tx.consensus(into: "X", from: sources, method: method, reference: reference, agent: "t") } }
        }
        try store.write(clearance: .all) { tx in _ = try tx.relabel(Array(1...40), TaintChange(removeIntegrity: ["reviewed"]), privileges: ["reviewed"], agent: "lead") }
        #expect(throws: ConsensusError.options("the reference truth@1 tagged reviewed labels no sample a source labels under this clearance")) {
            try store.write(clearance: .all) { tx in _ = try tx.consensus(into: "X", from: sources, method: .mean, reference: .tagged("reviewed", set: LabelSetReference(name: "truth")), agent: "t") }
        }
        #expect(try store.read(clearance: .all) { try $0.labelSet(named: "X") } == nil)
        #expect(throws: ConsensusError.self) { _ = try ConsensusReference(set: "gold", tag: "reviewed", tagSet: "truth") }
        #expect(throws: ConsensusError.self) { _ = try ConsensusReference(set: nil, tag: "reviewed", tagSet: nil) }
        // The CLI prints the accuracy table.
        let cli = try runCLI(["labels", "consensus", dir.file("store"), "C", "--from", "A,B", "--reference", "gold", "--clearance", "all"])
        #expect(cli.status == 0, "\(cli.stderr)")
        #expect(cli.stdout.contains("reference gold@1: 80 samples; each source's accuracy when it says a class"))
        let json = try runCLI(["labels", "consensus", dir.file("store"), "C", "--from", "A,B", "--reference", "gold", "--clearance", "all", "--format", "json"])
        #expect(json.stdout.contains("\"reference_samples\":80") && json.stdout.contains("\"reference_accuracy\""))
    }

    @Test("a reference-weighted version carries the secrecy of the reference rows and of every source row on a reference sample")
    func referenceSecrecy() throws {
        let dir = TemporaryDirectory("consensus")
        let store = try store(dir, n: 6)
        defer { store.close() }
        let sources = [LabelSetReference(name: "A"), LabelSetReference(name: "B")]
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard([0, 1, 2, 0, 1, 2]), ids: Array(1...6), into: "A", agent: "a")
            try tx.importLabels(.hard([0, 1, 2, 0, 2, 2]), ids: Array(1...6), into: "B", agent: "b")
            try tx.importLabels(.hard([0, 1]), ids: [1, 2], into: "gold", agent: "g", source: TaintLabel(secrecy: ["audit"], integrity: []))
            _ = try tx.relabel([2], TaintChange(addSecrecy: ["pii"]), agent: "x")
        }
        // Without a reference, mean takes each row's source only (the sample's own secrecy stays
        // on that sample's row): nothing secret.
        let plain = try store.write(clearance: .all) { tx in try tx.consensus(into: "P", from: sources, method: .mean, agent: "x") }
        #expect(plain.version.sourceLabel == .public)
        // With gold as reference, every weight depends on gold's rows (audit) and on the sources'
        // rows on samples 1 and 2 (sample 2 is pii): the whole version carries both.
        let weighted = try store.write(clearance: .all) { tx in
            try tx.consensus(into: "R", from: sources, method: .mean, reference: .set(LabelSetReference(name: "gold")), agent: "x")
        }
        #expect(weighted.version.sourceLabel == TaintLabel(secrecy: ["audit", "pii"], integrity: []))
        #expect(try store.read(clearance: .public) { try $0.label(of: 4, in: LabelSetReference(name: "R")) } == nil)
        #expect(try store.read(clearance: .public) { try $0.label(of: 4, in: LabelSetReference(name: "P")) } != nil)
    }
}
