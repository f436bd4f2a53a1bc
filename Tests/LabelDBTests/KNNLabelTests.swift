import Foundation
import Testing
@testable import LabelDB

/// A seeded store of labelled entries from several sources with different taint labels.
private struct MixedCorpus {
    let dir = TemporaryDirectory("knn-labels")
    let store: Store
    let d = 6
    var embeddings: [UInt64: [Float]] = [:]
    var distributions: [UInt64: [Float]] = [:]
    var taints: [UInt64: TaintLabel] = [:]
    var nextID: UInt64 = 1

    static let labelsPool: [TaintLabel] = [
        .public,
        TaintLabel(secrecy: ["a"], integrity: []),
        TaintLabel(secrecy: ["b"], integrity: []),
        TaintLabel(secrecy: ["a", "b"], integrity: []),
        TaintLabel(secrecy: ["c"], integrity: ["r"]),
        TaintLabel(secrecy: [], integrity: ["r"]),
    ]

    init(seed: UInt64, count: Int = 150, labels: [TaintLabel] = MixedCorpus.labelsPool) throws {
        store = try makeStore(dir, dimension: d)
        var rng = SeededGenerator(seed: seed)
        var samples: [Sample] = []
        for _ in 0..<count {
            let taint = labels[Int.random(in: 0..<labels.count, using: &rng)]
            samples.append(makeSample(&rng, taint: taint))
        }
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(samples), privileges: ["r"]) }
        try importLabels(samples.map(\.id))
    }

    mutating func makeSample(_ rng: inout SeededGenerator, taint: TaintLabel, near: [Float]? = nil) -> Sample {
        let id = nextID
        nextID += 1
        let embedding = near ?? (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
        var p = (0..<3).map { _ in Float.random(in: 0.01...1, using: &rng) }
        let sum = p.reduce(0, +)
        p = p.map { $0 / sum }
        embeddings[id] = embedding
        distributions[id] = p
        taints[id] = taint
        return Sample(id: id, embedding: embedding, taint: taint)
    }

    /// A new version of the label set with the current distributions of `ids`.
    func importLabels(_ ids: [UInt64]) throws {
        try store.write(clearance: .all) { tx in
            try tx.importLabels(.soft(ids.flatMap { distributions[$0]! }), ids: ids, into: "teacher", codec: .denseF32, agent: "t")
        }
    }

    func knn(_ query: [Float], k: Int, mode: KNNFlowMode, lambda: Float = 0.1, clearance: Clearance = .all) throws -> KNNLabelResult {
        try store.read(clearance: clearance) { tx in
            try tx.knnLabels(of: query, queries: 1, k: k, from: LabelSetReference(name: "teacher"), mode: mode, lambda: lambda)[0]
        }
    }

    func output(_ query: [Float], k: Int, under label: TaintLabel) throws -> KNNLabelResult {
        try store.read(clearance: .all) { tx in
            try tx.knnOutput(of: query, queries: 1, k: k, from: LabelSetReference(name: "teacher"), flowingTo: label)[0]
        }
    }

    /// The brute-force reference: exact cosine in double precision, ties by id, weights max(cos, 0).
    func reference(_ query: [Float], k: Int, admitted: (TaintLabel) -> Bool) -> (ids: [UInt64], probs: [Float], label: TaintLabel) {
        func cosine(_ a: [Float], _ b: [Float]) -> Float {
            var dot = 0.0, aa = 0.0, bb = 0.0
            for j in a.indices { dot += Double(a[j]) * Double(b[j]); aa += Double(a[j]) * Double(a[j]); bb += Double(b[j]) * Double(b[j]) }
            return Float(dot / (aa.squareRoot() * bb.squareRoot()))
        }
        var all: [Neighbor] = []
        for (id, embedding) in embeddings where admitted(taints[id]!) {
            all.append(Neighbor(id: id, similarity: cosine(query, embedding)))
        }
        all.sort { (a: Neighbor, b: Neighbor) -> Bool in a.similarity > b.similarity || (a.similarity == b.similarity && a.id < b.id) }
        let ranked = Array(all.prefix(k))
        var probs = [Float](repeating: 0, count: 3)
        var total: Float = 0
        var label = TaintLabel.public
        for n in ranked.sorted(by: { (a: Neighbor, b: Neighbor) -> Bool in a.id < b.id }) {
            label = label.join(taints[n.id]!)
            let w = max(n.similarity, 0)
            guard w > 0 else { continue }
            total += w
            let p = distributions[n.id]!
            for c in 0..<3 { probs[c] += w * p[c] }
        }
        if total > 0 {
            for c in 0..<3 { probs[c] /= total }
        } else {
            probs = [1 / 3, 1 / 3, 1 / 3]
        }
        return (ranked.map { $0.id }, probs, label)
    }
}

@Suite("kNN labels and permissive flow labels")
struct KNNLabelTests {
    @Test("the conservative kNN label equals a brute-force reference, under clearances too")
    func bruteForce() throws {
        let corpus = try MixedCorpus(seed: 11)
        var rng = SeededGenerator(seed: 12)
        for clearance in [Clearance.all, .public, Clearance(allowedSecrecy: .tags(["a"]))] {
            for _ in 0..<8 {
                let query = (0..<corpus.d).map { _ in Float.random(in: -1...1, using: &rng) }
                let result = try corpus.knn(query, k: 5, mode: .conservative, clearance: clearance)
                let expected = corpus.reference(query, k: 5) { clearance.admits($0) }
                #expect(result.neighbors.map(\.id) == expected.ids)
                #expect(zip(result.probabilities, expected.probs).allSatisfy { abs($0 - $1) < 1e-5 })
                #expect(result.conservativeLabel == expected.label && result.label == expected.label)
                #expect(Set(result.witness) == Set(expected.ids))
            }
        }
    }

    @Test("permissive ⊑ conservative always; the returned output is the one regenerated under the returned label", arguments: [21, 22, 23] as [UInt64])
    func permissiveBelowConservative(seed: UInt64) throws {
        let corpus = try MixedCorpus(seed: seed)
        var rng = SeededGenerator(seed: seed + 100)
        var lower = 0
        for _ in 0..<15 {
            let query = (0..<corpus.d).map { _ in Float.random(in: -1...1, using: &rng) }
            for lambda: Float in [0, 0.05, 0.3] {
                let result = try corpus.knn(query, k: 4, mode: .permissive, lambda: lambda)
                #expect(result.label.flows(to: result.conservativeLabel))
                if result.label != result.conservativeLabel { lower += 1 }
                // λ-similar to the full output, and exactly what the context alone regenerates.
                #expect(argmax(result.probabilities) == argmax(result.fullProbabilities))
                #expect(totalVariation(result.probabilities, result.fullProbabilities) <= lambda)
                let regenerated = try corpus.output(query, k: 4, under: result.label)
                #expect(regenerated.probabilities == result.probabilities)
                #expect(regenerated.neighbors == result.neighbors)
                #expect(result.neighbors.allSatisfy { corpus.taints[$0.id]!.flows(to: result.label) })
            }
        }
        #expect(lower > 0, "the corpus should give the search something to lower")
    }

    @Test("when every entry carries one label, permissive equals conservative")
    func oneLabel() throws {
        let shared = TaintLabel(secrecy: ["a", "b"], integrity: ["r"])
        let corpus = try MixedCorpus(seed: 31, count: 60, labels: [shared])
        var rng = SeededGenerator(seed: 32)
        for _ in 0..<10 {
            let query = (0..<corpus.d).map { _ in Float.random(in: -1...1, using: &rng) }
            let result = try corpus.knn(query, k: 5, mode: .permissive)
            // Labels carry the sample's taint joined with the (public, unvouched) source's.
            #expect(result.label == result.conservativeLabel && result.label == shared.join(.public))
            #expect(result.probabilities == result.fullProbabilities)
        }
    }

    @Test("public neighbours that reproduce the answer give the public label")
    func publicSuffices() throws {
        var corpus = try MixedCorpus(seed: 41, count: 40, labels: [TaintLabel(secrecy: ["far"], integrity: [])])
        var rng = SeededGenerator(seed: 42)
        let query: [Float] = [1, 0, 0, 0, 0, 0]
        var added: [Sample] = []
        // Licensed entries nearest, public ones just behind; both say class 0.
        for (i, taint) in [TaintLabel(secrecy: ["licensed"], integrity: []), .public].enumerated() {
            for j in 0..<4 {
                let offset = Float(i * 4 + j + 1) * 0.01
                var sample = corpus.makeSample(&rng, taint: taint, near: [1, offset, 0, 0, 0, 0])
                corpus.distributions[sample.id] = [0.9, 0.05, 0.05]
                sample.taint = taint
                added.append(sample)
            }
        }
        try corpus.store.write(clearance: .all) { tx in try tx.put(SampleBatch(added), privileges: ["r"]) }
        try corpus.importLabels(added.map(\.id))
        let result = try corpus.knn(query, k: 4, mode: .permissive)
        #expect(result.conservativeLabel == TaintLabel(secrecy: ["licensed"], integrity: []))
        #expect(result.label == .public)
        #expect(Set(result.witness) == Set(added.suffix(4).map(\.id)))
        #expect(abs(result.probabilities[0] - 0.9) < 1e-5)
    }

    @Test("non-interference: changing, adding or deleting entries whose label does not flow to L leaves the output under L bit-for-bit unchanged", arguments: [51, 52, 53] as [UInt64])
    func nonInterference(seed: UInt64) throws {
        var corpus = try MixedCorpus(seed: seed)
        var rng = SeededGenerator(seed: seed + 7)
        let query = (0..<corpus.d).map { _ in Float.random(in: -1...1, using: &rng) }
        let result = try corpus.knn(query, k: 5, mode: .permissive, lambda: 0.3)
        let label = result.label
        let outside = corpus.taints.filter { !$0.value.flows(to: label) }.map(\.key).sorted()
        try #require(!outside.isEmpty)
        // Move some outside entries onto the query, give others new label distributions, delete a
        // few, and add new outside entries right at the query.
        let moved = outside.filter { _ in Bool.random(using: &rng) }
        let relabelled = outside.filter { _ in Bool.random(using: &rng) }
        let deleted = Array(outside.filter { !moved.contains($0) }.prefix(3))
        var changed: [Sample] = moved.map { Sample(id: $0, embedding: query, taint: corpus.taints[$0]!) }
        for id in relabelled { corpus.distributions[id] = [0.01, 0.01, 0.98] }
        for taint in [TaintLabel(secrecy: ["zz"], integrity: []), TaintLabel(secrecy: ["a", "b", "c"], integrity: []), .public] where !taint.flows(to: label) {
            var sample = corpus.makeSample(&rng, taint: taint, near: query)
            sample.taint = taint
            changed.append(sample)
        }
        try corpus.store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(changed), privileges: ["r"])
            try tx.delete(deleted)
        }
        for id in deleted { corpus.embeddings[id] = nil; corpus.taints[id] = nil }
        try corpus.importLabels(Array(Set(relabelled + changed.map(\.id)).subtracting(deleted)).sorted())
        let after = try corpus.output(query, k: 5, under: label)
        #expect(after.probabilities == result.probabilities)
        #expect(after.neighbors == result.neighbors)
        // The full (conservative) answer did change: the perturbation was real.
        let full = try corpus.knn(query, k: 5, mode: .conservative)
        #expect(full.neighbors != result.neighbors || full.probabilities != result.fullProbabilities)
    }
}
