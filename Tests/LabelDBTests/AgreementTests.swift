import Foundation
import Testing
@testable import LabelDB

/// `labels agree` (issue 13): Cohen's κ, JS divergence and Fleiss' κ against values computed by
/// hand, and the clearance: agreement under a partial clearance equals that of a store holding
/// only what it sees.
@Suite("Label agreement")
struct AgreementTests {
    /// A store with samples 1…n (those in `secret` carry secrecy `pii`) and classes a, b, c.
    func store(_ dir: TemporaryDirectory, n: Int, secret: Set<UInt64> = []) throws -> Store {
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 2, classes: ["a", "b", "c"]))
        try store.write(clearance: .all) { tx in
            for id in UInt64(1)...UInt64(n) {
                try tx.put(Sample(id: id, embedding: [Float(id), 1], taint: secret.contains(id) ? TaintLabel(secrecy: ["pii"], integrity: []) : .public))
            }
        }
        return store
    }

    @Test("Cohen's κ and the confusion of two hard sets, by hand")
    func cohensKappa() throws {
        let dir = TemporaryDirectory("agree")
        let store = try store(dir, n: 10)
        defer { store.close() }
        // A: a a a a a b b b b c; B: a a a b b b b b c c: samples 4, 5 (a/b) and 9 (b/c) differ.
        let a = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2], b = [0, 0, 0, 1, 1, 1, 1, 1, 2, 2]
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard(a), ids: Array(1...10), into: "A", agent: "x")
            try tx.importLabels(.hard(b), ids: Array(1...10), into: "B", agent: "y")
        }
        let pair = try store.read(clearance: .all) { try $0.agreement(of: [LabelSetReference(name: "A"), LabelSetReference(name: "B")]) }.pairs[0]
        // pₒ = 7/10; marginals A (5, 4, 1), B (3, 5, 2): pₑ = (15 + 20 + 2) / 100 = 0.37.
        #expect(pair.count == 10 && abs(pair.agreement - 0.7) < 1e-12)
        #expect(abs(pair.kappa! - (0.7 - 0.37) / (1 - 0.37)) < 1e-12)
        #expect(pair.confusion == [[3, 2, 0], [0, 3, 1], [0, 0, 1]])
        // Hard labels are one-hot: JS is ln 2 where they differ, 0 elsewhere.
        #expect(abs(pair.jsDivergence - 0.3 * log(2.0)) < 1e-9)
        #expect(pair.a == "A@1" && pair.b == "B@1")
    }

    @Test("mean JS divergence of soft labels, by hand")
    func jensenShannonByHand() throws {
        let dir = TemporaryDirectory("agree")
        let store = try store(dir, n: 2)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.soft([1, 0, 0, 0.2, 0.3, 0.5]), ids: [1, 2], into: "P", codec: .denseF32, agent: "x")
            try tx.importLabels(.soft([0.5, 0.5, 0, 0.2, 0.3, 0.5]), ids: [1, 2], into: "Q", codec: .denseF32, agent: "y")
        }
        let pair = try store.read(clearance: .all) { try $0.agreement(of: [LabelSetReference(name: "P"), LabelSetReference(name: "Q")]) }.pairs[0]
        // Sample 1: M = (0.75, 0.25, 0): JS = ½·ln(1/0.75) + ½·(0.5·ln(0.5/0.75) + 0.5·ln(0.5/0.25)); sample 2: 0.
        let js1 = 0.5 * log(1 / 0.75) + 0.5 * (0.5 * log(0.5 / 0.75) + 0.5 * log(0.5 / 0.25))
        #expect(abs(pair.jsDivergence - js1 / 2) < 1e-6, "\(pair.jsDivergence) vs \(js1 / 2)")
        // Top-1: P (a, c), Q (a — a tie, to the smaller class — and c): full agreement, κ 1.
        #expect(pair.agreement == 1 && pair.kappa == 1)
    }

    @Test("Fleiss' κ of three raters, by hand; samples one set does not label are left out")
    func fleiss() throws {
        let dir = TemporaryDirectory("agree")
        let store = try store(dir, n: 5)
        defer { store.close() }
        // Subjects 1–4 rated (a a a), (a a b), (b b b), (a b b); sample 5 only by R1 and R2.
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard([0, 0, 1, 0, 2]), ids: [1, 2, 3, 4, 5], into: "R1", agent: "1")
            try tx.importLabels(.hard([0, 0, 1, 1, 2]), ids: [1, 2, 3, 4, 5], into: "R2", agent: "2")
            try tx.importLabels(.hard([0, 1, 1, 1]), ids: [1, 2, 3, 4], into: "R3", agent: "3")
        }
        let result = try store.read(clearance: .all) { try $0.agreement(of: ["R1", "R2", "R3"].map { LabelSetReference(name: $0) }) }
        // pⱼ = (0.5, 0.5); Pᵢ = 1, 1/3, 1, 1/3 → P̄ = 2/3; P̄ₑ = 0.5 → κ = (2/3 − 1/2) / (1/2) = 1/3.
        #expect(result.fleissCount == 4 && abs(result.fleissKappa! - 1.0 / 3) < 1e-12)
        #expect(result.pairs.map(\.count) == [5, 4, 4])
    }

    @Test("under a partial clearance, agreement equals that of a store holding only what it sees")
    func clearanceEquivalence() throws {
        var rng = SeededGenerator(seed: 13)
        let n = 60
        let secret = Set((1...UInt64(n)).filter { $0 % 4 == 0 })
        let labels = (0..<3).map { _ in (0..<n).map { _ in Int.random(in: 0..<3, using: &rng) } }
        func agreement(_ store: Store, ids: [UInt64], clearance: Clearance) throws -> Agreement {
            try store.write(clearance: .all) { tx in
                for (s, name) in ["A", "B", "C"].enumerated() {
                    try tx.importLabels(.hard(ids.map { labels[s][Int($0) - 1] }), ids: ids, into: name, agent: name)
                }
            }
            return try store.read(clearance: clearance) { try $0.agreement(of: ["A", "B", "C"].map { LabelSetReference(name: $0) }) }
        }
        let fullDir = TemporaryDirectory("agree"), partDir = TemporaryDirectory("agree")
        let full = try store(fullDir, n: n, secret: secret)
        defer { full.close() }
        let visible = (1...UInt64(n)).filter { !secret.contains($0) }
        let part = try Store.create(at: partDir.file("store"), schema: Schema(dimension: 2, classes: ["a", "b", "c"]))
        defer { part.close() }
        try part.write(clearance: .all) { tx in for id in visible { try tx.put(Sample(id: id, embedding: [Float(id), 1])) } }
        let underPublic = try agreement(full, ids: Array(1...UInt64(n)), clearance: .public)
        #expect(underPublic == (try agreement(part, ids: visible, clearance: .public)))
        #expect(underPublic.pairs[0].count == visible.count)
        #expect(try full.read(clearance: .all) { try $0.agreement(of: [LabelSetReference(name: "A"), LabelSetReference(name: "B")]) }.pairs[0].count == n)
    }

    @Test("bad requests: one set, a set named twice, no common sample, an unknown set")
    func refusals() throws {
        let dir = TemporaryDirectory("agree")
        let store = try store(dir, n: 4)
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.hard([0, 1]), ids: [1, 2], into: "A", agent: "x")
            try tx.importLabels(.hard([0, 1]), ids: [3, 4], into: "B", agent: "y")
        }
        try store.read(clearance: .all) { tx in
            #expect(throws: AgreementError.self) { try tx.agreement(of: [LabelSetReference(name: "A")]) }
            #expect(throws: AgreementError.sources("A@1 is named twice")) { try tx.agreement(of: [LabelSetReference(name: "A"), LabelSetReference(name: "A", version: 1)]) }
            #expect(throws: AgreementError.noCommonSample("A@1", "B@1")) { try tx.agreement(of: [LabelSetReference(name: "A"), LabelSetReference(name: "B")]) }
            #expect(throws: LabelError.unknownLabelSet("C")) { try tx.agreement(of: [LabelSetReference(name: "A"), LabelSetReference(name: "C")]) }
        }
        let cli = try runCLI(["labels", "agree", dir.file("store"), "A", "B", "--clearance", "all"])
        #expect(cli.status == 2 && cli.stderr.contains("label no common sample"))
    }
}
