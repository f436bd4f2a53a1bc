import Foundation
import Testing
@testable import LabelDB

/// Tests that mutation testing (`Tools/mutate`, `Tools/mutants.txt`) showed were missing: each
/// names the mutant it catches, a one-line fault the rest of the suite let through.
@Suite("Mutation gaps")
struct MutationGapTests {
    @Test("M03: interning refuses a content-index entry (valid checksum) that names a label of other content")
    func forgedContentIndexEntry() throws {
        let dir = TemporaryDirectory("gap-index")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        let pii = TaintLabel(secrecy: ["pii"], integrity: [])
        try store.write(clearance: .all) { tx in
            try tx.put(Sample(id: 1, embedding: [1, 0, 0, 0], taint: pii))
            try tx.put(Sample(id: 2, embedding: [0, 1, 0, 0], taint: TaintLabel(secrecy: ["licensed"], integrity: [])))
        }
        // Forge the entry for {pii, licensed} (never interned) to name {pii}'s label: a sample
        // tagged with both would then read as pii only, and reach pii-cleared readers.
        try store.write(clearance: .all) { tx in
            let catalog = try tx.catalog()
            let tags = [catalog.tagIDs["pii"]!, catalog.tagIDs["licensed"]!].sorted()
            let key = TaintLabelRecord.contentKey(secrecy: tags, integrity: [])
            try tx.put(.taintLabelIndex, key: key, bytes: TaintLabelRecord.indexValue(key: key, id: try #require(try tx.sampleTaintID(1))))
            tx.changeSummary = [:]
        }
        #expect(throws: StoreError.self) {
            try store.write(clearance: .all) { tx in try tx.put(Sample(id: 3, embedding: [0, 0, 1, 0], taint: TaintLabel(secrecy: ["pii", "licensed"], integrity: []))) }
        }
        #expect(try store.read(clearance: Clearance(allowedSecrecy: .tags(["pii"]))) { try $0.ids() } == [1])
    }

    @Test("M04: with every entry vouched for, the permissive label keeps the integrity every candidate had")
    func permissiveKeepsIntegrity() throws {
        let dir = TemporaryDirectory("gap-integrity")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        var rng = SeededGenerator(seed: 31)
        let labels: [TaintLabel] = [
            TaintLabel(secrecy: [], integrity: ["r"]), TaintLabel(secrecy: ["a"], integrity: ["r"]), TaintLabel(secrecy: ["b"], integrity: ["r"]),
        ]
        let ids = (1...60).map(UInt64.init)
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids.map { Sample(id: $0, embedding: (0..<4).map { _ in Float.random(in: -1...1, using: &rng) }, taint: labels[Int($0 % 3)]) }), privileges: ["r"])
            // A vouched source: rows keep the samples' integrity.
            try tx.importLabels(.soft(ids.flatMap { _ in [0.6, 0.3, 0.1] as [Float] }), ids: ids, into: "t", codec: .denseF32, agent: "t",
                                source: TaintLabel(secrecy: [], integrity: ["r"]), privileges: ["r"])
        }
        let queries = (0..<(8 * 4)).map { _ in Float.random(in: -1...1, using: &rng) }
        let results = try store.read(clearance: .all) { try $0.knnLabels(of: queries, queries: 8, k: 5, from: LabelSetReference(name: "t"), lambda: 0.2) }
        for result in results {
            #expect(result.conservativeLabel.integrity == .tags(["r"]))
            #expect(result.label.integrity == .tags(["r"]) && result.label.flows(to: result.conservativeLabel))
        }
    }

    @Test("M05: L2 kNN labels weight each neighbour by 1 / (1 + distance)")
    func l2Weights() throws {
        let dir = TemporaryDirectory("gap-l2")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        let points: [[Float]] = [[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 3, 0]]
        let soft: [[Float]] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((0..<3).map { Sample(id: UInt64($0 + 1), embedding: points[$0]) }))
            try tx.importLabels(.soft(soft.flatMap { $0 }), ids: [1, 2, 3], into: "t", codec: .denseF32, agent: "t")
        }
        let query: [Float] = [0, 0, 0, 0]
        let result = try store.read(clearance: .all) { try $0.knnLabels(of: query, queries: 1, k: 3, from: LabelSetReference(name: "t"), metric: .l2, mode: .conservative)[0] }
        let weights = points.map { 1 / (1 + $0.reduce(0) { $0 + $1 * $1 }.squareRoot()) }   // 1/2, 1/3, 1/4
        let total = weights.reduce(0, +)
        for c in 0..<3 { #expect(abs(result.probabilities[c] - weights[c] / total) < 1e-5, "class \(c): \(result.probabilities)") }
    }

    @Test("M06: with --top1, a fit corrects every sample whose regenerated top-1 differs, even where KL is within the bound")
    func correctionsForTopOne() throws {
        let dir = TemporaryDirectory("gap-top1")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        var rng = SeededGenerator(seed: 8)
        let ids = (1...80).map(UInt64.init)
        let teacher: [Float] = ids.flatMap { _ in
            let raw = (0..<3).map { _ in Float.random(in: 0.05...1, using: &rng) }
            return raw.map { $0 / raw.reduce(0, +) }
        }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids.map { Sample(id: $0, embedding: (0..<4).map { _ in Float.random(in: -1...1, using: &rng) }) }))
            try tx.importLabels(.soft(teacher), ids: ids, into: "t", codec: .denseF32, agent: "t")
        }
        // A bound so loose that KL alone never calls for a correction.
        let version = try store.fitProjector("p", from: LabelSetReference(name: "t"), options: quickFitOptions, maxKL: 50, requireTop1: true, clearance: .all)
        #expect(version.corrections > 0)
        let regenerated = try store.read(clearance: .all) { tx in try tx.regenerate(ids, with: try tx.load(ProjectorReference(name: "p"))) }
        for (i, row) in regenerated.enumerated() {
            let expected = argmax(Array(teacher[(i * 3)..<(i * 3 + 3)]))
            #expect(argmax(row.probabilities) == expected, "sample \(row.id) (\(row.status))")
        }
    }

    @Test("M07: a relabel that removes an integrity tag takes it out of projectors fitted on the sample")
    func removedIntegrityReachesProjectors() throws {
        let dir = TemporaryDirectory("gap-remove-integrity")
        let store = try makeStore(dir, dimension: 4)
        defer { store.close() }
        let vouched = TaintLabel(secrecy: [], integrity: ["r"])
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch((1...6).map { Sample(id: UInt64($0), embedding: [1, Float($0), 0.5, -0.5], taint: vouched) }), privileges: ["r"])
            try tx.importLabels(.soft((1...6).flatMap { _ in [0.5, 0.3, 0.2] as [Float] }), ids: Array(1...6), into: "t", agent: "t", source: vouched, privileges: ["r"])
        }
        #expect(try store.fitProjector("p", from: LabelSetReference(name: "t"), options: quickFitOptions, clearance: .all).taintLabel == vouched)
        try store.write(clearance: .all) { tx in try tx.relabel([3], TaintChange(removeIntegrity: ["r"]), agent: "auditor") }
        #expect(try store.read(clearance: .all) { try $0.projector(named: "p")!.versions[0].taintLabel } == .public)
        // A reader who requires the vouch can no longer use it.
        #expect(throws: ProjectorError.self) { _ = try store.read(clearance: try Clearance(parsing: "integrity=r")) { try $0.load(ProjectorReference(name: "p")) } }
    }

    @Test("M08: adaptive stays within EPS at small EPS too", arguments: [1e-4, 1e-5, 2e-6, 1e-6])
    func adaptiveSmallEpsilon(eps: Double) throws {
        var rng = SeededGenerator(seed: 3)
        let classes = 200
        let codec = SoftLabelCodec.adaptive(eps)
        for _ in 0..<40 {
            var p = (0..<classes).map { _ in Float.random(in: 0...1, using: &rng) }
            p = p.map { pow($0, 8) }
            let sum = p.reduce(0, +)
            p = p.map { $0 / sum }
            var bytes: [UInt8] = []
            p.withUnsafeBufferPointer { codec.encode($0, into: &bytes) }
            var out = [Float](repeating: 0, count: classes)
            try bytes.withUnsafeBytes { raw in try out.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } }
            let kl = p.withUnsafeBufferPointer { pb in out.withUnsafeBufferPointer { klDivergence(pb, $0) } }
            #expect(kl <= eps, "KL \(kl) > \(eps)")
        }
    }

    @Test("M09: top-K keeps tied classes in ascending class order, so equal labels encode to equal bytes")
    func topKTieOrder() {
        let p: [Float] = [0.2, 0.4, 0.2, 0.2]
        var bytes: [UInt8] = []
        p.withUnsafeBufferPointer { SoftLabelCodec.topKF16(4).encode($0, into: &bytes) }
        // Layout: leftover (f16), then (class u16, probability f16) most probable first.
        let classes = stride(from: 2, to: bytes.count, by: 4).map { Int(bytes[$0]) | Int(bytes[$0 + 1]) << 8 }
        #expect(classes == [1, 0, 2, 3])
    }

    @Test("M19: a shape whose non-zero dimensions overflow is refused even when another dimension is zero")
    func zeroDimensionOverflow() throws {
        // Callers multiply a row's dimensions (e.g. columns × element size) whatever the row count.
        #expect(throws: InputError.self) { _ = try NumPyArray.dataSize(shape: [0, 1 << 62, 4], dtype: .float32, path: "x.npy") }
        #expect(try NumPyArray.dataSize(shape: [0, 16], dtype: .float32, path: "x.npy") == 0)
        #expect(try NumPyArray.dataSize(shape: [3, 16], dtype: .float32, path: "x.npy") == 192)
    }
}
