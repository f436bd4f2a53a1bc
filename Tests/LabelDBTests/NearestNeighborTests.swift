import Foundation
import Testing
@testable import LabelDB

@Suite("Nearest neighbours")
struct NearestNeighborTests {
    /// Brute force in double precision.
    func reference(_ samples: [Sample], _ q: [Float], k: Int, metric: NeighborMetric) -> [Neighbor] {
        func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
        let scored = samples.map { s -> Neighbor in
            switch metric {
            case .cosine: return Neighbor(id: s.id, similarity: Float(dot(q, s.embedding) / (dot(q, q).squareRoot() * dot(s.embedding, s.embedding).squareRoot())))
            case .l2: return Neighbor(id: s.id, similarity: Float(-zip(q, s.embedding).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()))
            }
        }
        return Array(scored.sorted(by: Neighbor.nearer).prefix(k))
    }

    @Test("exact kNN equals a brute-force reference, for cosine and L2, many queries at once", arguments: [NeighborMetric.cosine, .l2])
    func matchesBruteForce(metric: NeighborMetric) throws {
        let dir = TemporaryDirectory()
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 12, classes: ["a"], rowsPerBlock: 16))
        defer { store.close() }
        let samples = randomSamples(count: 300, dimension: 12, seed: 8)
        try store.write(clearance: .all) { tx in try tx.put(SampleBatch(samples)) }
        try store.write(clearance: .all) { tx in _ = try tx.delete(Array(samples.prefix(20).map(\.id))) }
        let live = Array(samples.dropFirst(20))
        var rng = SplitMix64(seed: 3)
        let queries = (0..<(7 * 12)).map { _ in Float.random(in: -1...1, using: &rng) }
        let hits = try store.read(clearance: .all) { tx in try tx.nearestNeighbors(of: queries, queries: 7, k: 10, metric: metric) }
        for i in 0..<7 {
            let expected = reference(live, Array(queries[(i * 12)..<((i + 1) * 12)]), k: 10, metric: metric)
            #expect(hits[i].map(\.id) == expected.map(\.id))
            for (a, b) in zip(hits[i], expected) { #expect(abs(a.similarity - b.similarity) < 1e-4) }
        }
        // A filter removes candidates; the rest keep their order.
        let odd = try store.read(clearance: .all) { tx in try tx.nearestNeighbors(of: Array(queries[0..<12]), queries: 1, k: 5, metric: metric, include: { $0 % 2 == 1 }) }
        #expect(odd[0].map(\.id) == reference(live.filter { $0.id % 2 == 1 }, Array(queries[0..<12]), k: 5, metric: metric).map(\.id))
        // A query filter restricts candidates the same way (`knn --where`).
        let web = try store.read(clearance: .all) { tx in
            try tx.nearestNeighbors(of: Array(queries[0..<12]), queries: 1, k: 5, metric: metric,
                                    include: try tx.matcher(for: QueryExpression(parsing: "meta.source = 'web'")))
        }
        #expect(web[0].map(\.id) == reference(live.filter { $0.metadata["source"] == "web" }, Array(queries[0..<12]), k: 5, metric: metric).map(\.id))
    }

    @Test("equal similarities are ordered by the smaller id")
    func ties() throws {
        let dir = TemporaryDirectory()
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 4, classes: ["a"]))
        defer { store.close() }
        // Small integers: every dot product is exact, so equal rows tie exactly.
        try store.write(clearance: .all) { tx in
            for id: UInt64 in [9, 3, 5] { try tx.put(Sample(id: id, embedding: [1, 2, 0, 1])) }
            try tx.put(Sample(id: 1, embedding: [0, 0, 3, 0]))
        }
        let hits = try store.read(clearance: .all) { tx in try tx.nearestNeighbors(of: [1, 2, 0, 1], queries: 1, k: 4, metric: .cosine) }
        #expect(hits[0].map(\.id) == [3, 5, 9, 1])
    }
}
