import Foundation
import Testing
@testable import LabelDB

/// `labels issues` (issue 13): confident learning against cleanlab 2.9.0's committed output
/// (Fixtures/cleanlab, written by Tools/cleanlab-expected), planted flips, the written review
/// set, clearances and refusals.
@Suite("Label issues (confident learning)")
struct LabelIssueTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/cleanlab")

    struct Case {
        var given: [Int]
        var probs: [Float]
        var classes: Int
        var flipped: [Bool]
        var expected: [String: [UInt64]]
        /// cleanlab's thresholds and calibrated confident joint.
        var thresholds: [Double] = []
        var joint: [[Int]] = []
    }

    static func fixture(_ name: String) throws -> Case {
        let document = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("expected.json"))) as! [String: Any]
        let entry = (document["cases"] as! [String: Any])[name] as! [String: Any]
        let file = { (suffix: String) in fixtures.appendingPathComponent("\(name)-\(suffix).npy").path }
        return Case(
            given: try NumPyArray.read(file("given")).integers().map { Int($0) },
            probs: try NumPyArray.read(file("probs")).floats(),
            classes: entry["classes"] as! Int,
            flipped: try NumPyArray.read(file("flipped")).integers().map { $0 != 0 },
            expected: (entry["expected"] as! [String: [Int]]).mapValues { $0.map(UInt64.init) },
            // (Foundation's JSON parser rounds some doubles; LabelDB's own reads them exactly.)
            thresholds: try JSONValue.parse(String(contentsOf: fixtures.appendingPathComponent("expected.json"), encoding: .utf8))["cases"]![name]!["thresholds"]!
                .arrayValue!.map { $0.doubleValue! },
            joint: entry["confident_joint"] as! [[Int]])
    }

    /// A store with samples 0..<n, the given labels as `given` and the probabilities as `probs`
    /// (`dense:f32`: the values cleanlab saw, exactly).
    static func store(_ dir: TemporaryDirectory, _ c: Case, taint: (UInt64) -> TaintLabel = { _ in .public }) throws -> Store {
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: (0..<c.classes).map { "k\($0)" }))
        let ids = (0..<UInt64(c.given.count)).map { $0 }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids.map { Sample(id: $0, embedding: [Float($0), 1], taint: taint($0)) }))
            try tx.importLabels(.hard(c.given), ids: ids, into: "given", agent: "annotators")
            try tx.importLabels(.soft(c.probs), ids: ids, into: "probs", codec: .denseF32, agent: "model")
        }
        return store
    }

    static let given = LabelSetReference(name: "given"), probs = LabelSetReference(name: "probs")

    @Test("flags what cleanlab 2.9.0 flags, ranked the same, on every committed corpus and filter",
          arguments: ["small", "medium", "wide", "coarse"])
    func matchesCleanlab(name: String) throws {
        let c = try Self.fixture(name)
        let dir = TemporaryDirectory("issues")
        let store = try Self.store(dir, c)
        defer { store.close() }
        for filter in LabelIssueFilter.allCases {
            let result = try store.read(clearance: .all) { try $0.labelIssues(given: Self.given, probs: Self.probs, filter: filter) }
            #expect(result.issues.map(\.id) == c.expected[filter.rawValue], "\(name) \(filter.rawValue)")
            #expect(result.examined == c.given.count)
            for issue in result.issues {
                let row = Array(c.probs[(Int(issue.id) * c.classes)..<(Int(issue.id) * c.classes + c.classes)])
                #expect(issue.given == c.given[Int(issue.id)] && issue.selfConfidence == Double(row[issue.given]))
                #expect(issue.suggested == argmax(row) && issue.suggested != issue.given)
                #expect(issue.margin == Double(row[issue.given]) - Double(row.enumerated().filter { $0.offset != issue.given }.map(\.element).max()!))
            }
            #expect(result.issues.map(\.rank) == Array(1...max(result.issues.count, 1)).prefix(result.issues.count).map { $0 })
            // The counting half, number for number (a class no sample is given: cleanlab's 2).
            #expect(result.thresholds.map { $0 ?? 2 } == c.thresholds && result.thresholds.last! == nil)
            #expect(result.confidentJoint == c.joint && result.confidentJoint.joined().reduce(0, +) == c.given.count)
        }
    }

    @Test("finds the planted flips: precision and recall on the committed corpora")
    func plantedFlips() throws {
        for name in ["small", "medium", "wide"] {
            let c = try Self.fixture(name)
            let dir = TemporaryDirectory("issues")
            let store = try Self.store(dir, c)
            defer { store.close() }
            let flagged = Set(try store.read(clearance: .all) { try $0.labelIssues(given: Self.given, probs: Self.probs) }.issues.map(\.id))
            let planted = Set(c.flipped.indices.filter { c.flipped[$0] }.map(UInt64.init))
            let hits = flagged.intersection(planted).count
            // The probabilities come from a model that is itself wrong at times; these bounds
            // hold for cleanlab's answer too (Tools/cleanlab-expected prints its figures).
            #expect(Double(hits) / Double(flagged.count) >= 0.7, "\(name) precision")
            #expect(Double(hits) / Double(planted.count) >= 0.85, "\(name) recall")
        }
    }

    @Test("cleanlab's rounding: half to even, then the row total restored where rounding lost most")
    func rounding() {
        #expect(ConfidentLearning.roundPreservingSum([4.5, 1.5]) == [4, 2])
        // Two equal errors: a stable order takes the first.
        #expect(ConfidentLearning.roundPreservingSum([2.5000000000000004, 2.5000000000000004]) == [2, 3])
        #expect(ConfidentLearning.roundPreservingSum([0.4, 0.4, 0.2]) == [0, 1, 0])
        // numpy's pairwise sum: 0.1 × 200 summed in blocks differs from a running sum.
        let tenths = [Double](repeating: 0.1, count: 200)
        #expect(ConfidentLearning.pairwiseSum(tenths[...]) == 20.0)
        #expect(tenths.reduce(0, +) == 20.000000000000014)
    }

    @Test("--write-set: the suggested classes of the flagged samples, with provenance and the secrecy of every row read")
    func writesSuggestions() throws {
        let c = try Self.fixture("small")
        let dir = TemporaryDirectory("issues")
        let store = try Self.store(dir, c, taint: { $0 == 7 ? TaintLabel(secrecy: ["pii"], integrity: []) : .public })
        defer { store.close() }
        let (result, version) = try store.write(clearance: .all) { tx in
            let result = try tx.labelIssues(given: Self.given, probs: Self.probs)
            return (result, try tx.writeSuggestions(of: result, into: "review", agent: "me"))
        }
        #expect(version.rows == result.issues.count && version.sourceLabel.secrecy == .tags(["pii"]))
        try store.read(clearance: .all) { tx in
            var written: [UInt64: Int] = [:]
            try tx.forEachLabel(in: LabelSetReference(name: "review")) { id, label in written[id] = label.hard; return true }
            #expect(written == Dictionary(uniqueKeysWithValues: result.issues.map { ($0.id, $0.suggested) }))
            let record = try tx.provenanceRecords().last!.record
            #expect(record.activity == "label issues" && record.used.map(\.name) == ["given", "probs"] && record.parameters["filter"] == "prune-by-noise-rate")
        }
        // Under public, sample 7 is hidden, and so is every row of the written set.
        #expect(try store.read(clearance: .public) { tx in
            var seen = 0
            try tx.forEachLabel(in: LabelSetReference(name: "review")) { _, _ in seen += 1; return true }
            return seen
        } == 0)
    }

    @Test("under a partial clearance: the answer of a store holding only what it sees")
    func clearance() throws {
        let c = try Self.fixture("small")
        let hidden: Set<UInt64> = Set((0..<UInt64(c.given.count)).filter { $0 % 5 == 2 })
        let fullDir = TemporaryDirectory("issues"), partDir = TemporaryDirectory("issues")
        let full = try Self.store(fullDir, c, taint: { hidden.contains($0) ? TaintLabel(secrecy: ["pii"], integrity: []) : .public })
        defer { full.close() }
        let keep = (0..<c.given.count).filter { !hidden.contains(UInt64($0)) }
        let visible = Case(given: keep.map { c.given[$0] }, probs: keep.flatMap { c.probs[($0 * c.classes)..<($0 * c.classes + c.classes)] },
                           classes: c.classes, flipped: [], expected: [:])
        let part = try Self.store(partDir, visible)
        defer { part.close() }
        for filter in LabelIssueFilter.allCases {
            let seen = try full.read(clearance: .public) { try $0.labelIssues(given: Self.given, probs: Self.probs, filter: filter) }
            let alone = try part.read(clearance: .public) { try $0.labelIssues(given: Self.given, probs: Self.probs, filter: filter) }
            // The part store numbers the visible samples 0, 1, …: map back.
            #expect(seen.issues.map(\.id) == alone.issues.map { UInt64(keep[Int($0.id)]) })
            #expect(seen.examined == keep.count && seen.confidentJoint == alone.confidentJoint)
        }
    }

    @Test("refusals: a soft given set, hard probabilities, no common sample, one given class, the same set twice, a label filter for a written set; nothing written")
    func refusals() throws {
        let dir = TemporaryDirectory("issues")
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: ["a", "b"]))
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            for id in UInt64(1)...4 { try tx.put(Sample(id: id, embedding: [Float(id), 1])) }
            try tx.importLabels(.hard([0, 1]), ids: [1, 2], into: "H", agent: "x")
            try tx.importLabels(.hard([1, 1]), ids: [1, 2], into: "H2", agent: "x")
            try tx.importLabels(.soft([0.9, 0.1, 0.2, 0.8]), ids: [1, 2], into: "S", agent: "y")
            try tx.importLabels(.soft([0.9, 0.1, 0.2, 0.8]), ids: [3, 4], into: "N", agent: "y")
        }
        let h = LabelSetReference(name: "H"), s = LabelSetReference(name: "S")
        try store.read(clearance: .all) { tx in
            #expect(throws: AgreementError.sources("S@1 is named twice")) { try tx.labelIssues(given: s, probs: s) }
            #expect(throws: LabelIssuesError.inputs("--given S@1 is not a hard label set: confident learning needs one given class per sample")) {
                try tx.labelIssues(given: s, probs: h)
            }
            #expect(throws: LabelIssuesError.inputs("--probs H2@1 is not a soft label set or projector: confident learning needs predicted probabilities")) {
                try tx.labelIssues(given: h, probs: LabelSetReference(name: "H2"))
            }
            #expect(throws: LabelIssuesError.noCommonSample("H@1", "N@1")) { try tx.labelIssues(given: h, probs: LabelSetReference(name: "N")) }
            #expect(throws: LabelIssuesError.inputs("the given labels of H2@1 name one class only: confident learning needs at least two (cleanlab refuses one too)")) {
                try tx.labelIssues(given: LabelSetReference(name: "H2"), probs: s)
            }
        }
        let cli = try runCLI(["labels", "issues", dir.file("store"), "--given", "H", "--probs", "N", "--write-set", "review", "--clearance", "all"])
        #expect(cli.status == 2 && cli.stderr.contains("label no common sample"))
        #expect(try store.read(clearance: .all) { try $0.labelSet(named: "review") } == nil)
        // A filter that reads labels would shape the written set by rows whose taint it does not carry.
        let shaped = try runCLI(["labels", "issues", dir.file("store"), "--given", "H", "--probs", "S", "--where", "label(H2).top1 = 'b'",
                                 "--write-set", "review", "--clearance", "all"])
        #expect(shaped.status == 2 && shaped.stderr.contains("cannot use a --where that reads labels (H2)"))
        #expect(try store.read(clearance: .all) { try $0.labelSet(named: "review") } == nil)
        let bad = try runCLI(["labels", "issues", dir.file("store"), "--given", "H", "--probs", "S", "--filter", "prune"])
        #expect(bad.status != 0 && bad.stderr.contains("--filter must be prune-by-noise-rate, prune-by-class or both"))
    }

    @Test("CLI: one JSON line per flagged sample, the text table, --write-set")
    func command() throws {
        let c = try Self.fixture("small")
        let dir = TemporaryDirectory("issues")
        let store = try Self.store(dir, c)
        store.close()
        let json = try runCLI(["labels", "issues", dir.file("store"), "--given", "given", "--probs", "probs", "--filter", "both", "--format", "json", "--clearance", "all"])
        #expect(json.status == 0, "\(json.stderr)")
        let lines = json.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(lines.map { UInt64($0["id"] as! Int) } == c.expected["both"])
        #expect(lines.allSatisfy { Set($0.keys) == ["rank", "id", "given", "suggested", "self_confidence", "margin"] })
        let text = try runCLI(["labels", "issues", dir.file("store"), "--given", "given", "--probs", "probs", "--limit", "3", "--write-set", "review", "--clearance", "all"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("\(c.expected["prune-by-noise-rate"]!.count) of \(c.given.count) samples flagged (prune-by-noise-rate) in given@1 against probs@1"))
        #expect(text.stdout.contains("… \(c.expected["prune-by-noise-rate"]!.count - 3) more (--limit)"))
        #expect(text.stdout.contains("wrote label set review version 1: \(c.expected["prune-by-noise-rate"]!.count) suggested labels"))
    }
}
