import COpenBLAS
import Foundation

/// How nearest neighbours are measured.
public enum NeighborMetric: String, Sendable, CaseIterable {
    /// Cosine similarity (1 = same direction).
    case cosine
    /// Euclidean distance; the similarity reported is its negative, so larger is nearer for both.
    case l2
}

/// One neighbour of a query.
public struct Neighbor: Equatable, Sendable {
    /// The sample.
    public var id: UInt64
    /// Cosine similarity, or the negative Euclidean distance for `l2`.
    public var similarity: Float

    /// Creates a neighbour.
    public init(id: UInt64, similarity: Float) {
        self.id = id
        self.similarity = similarity
    }

    /// Nearer first: larger similarity, then the smaller id (so ties have one answer).
    static func nearer(_ a: Neighbor, _ b: Neighbor) -> Bool {
        a.similarity > b.similarity || (a.similarity == b.similarity && a.id < b.id)
    }
}

extension Transaction {
    /// Exact k nearest neighbours of each query among the stored embeddings, computed block by
    /// block with one `cblas_sgemm` per block against all queries at once (no per-row copies).
    ///
    /// For example:
    ///
    /// ```swift
    /// let hits = try store.read(clearance: .all) { tx in try tx.nearestNeighbors(of: q, queries: 1, k: 10, metric: .cosine) }
    /// ```
    ///
    /// - Parameters:
    ///   - queries: `queries × dimension` floats, row-major.
    ///   - include: when given, only samples it accepts are candidates.
    /// - Returns: per query, up to `k` neighbours, nearest first, ties by smaller id.
    public func nearestNeighbors(
        of queries: [Float], queries count: Int, k: Int, metric: NeighborMetric,
        include: ((UInt64) throws -> Bool)? = nil
    ) throws -> [[Neighbor]] {
        let d = store.schema.dimension
        precondition(queries.count == count * d, "queries must be count × dimension")
        guard k > 0, count > 0 else { return Array(repeating: [], count: count) }
        var best = try scanNearest(queries, count: count, keep: k, metric: metric, groups: 1) { id in
            if let include, try !include(id) { return nil }
            return 0
        }
        if metric == .l2 {
            // |q|² + |r|² − 2q·r cancels badly for near neighbours (a vector's distance to itself
            // came out as 0.005 at norm 12): recompute the k winners' distances directly.
            var row = [Float](repeating: 0, count: d)
            for i in 0..<count {
                for t in best[i].indices {
                    guard try withSample(best[i][t].id, { view in
                        row.withUnsafeMutableBufferPointer { ElementEncoding.load(view.embeddingBytes, count: d, as: view.elementType, into: $0.baseAddress!) }
                    }) != nil else { continue }
                    var sum: Float = 0
                    for j in 0..<d { let diff = queries[i * d + j] - row[j]; sum += diff * diff }
                    best[i][t].similarity = -sum.squareRoot()
                }
                best[i].sort(by: Neighbor.nearer)
            }
        }
        return best
    }

    /// The scan behind every nearest-neighbour search: one `cblas_sgemm` per embedding block
    /// against all queries, and per query a separate top-`keep` list for each candidate group
    /// (`group` maps an id to its group in 0..<groups, or nil to skip it). Returns the lists
    /// flat, `[query * groups + group]`, nearest first (ties by smaller id), similarities from
    /// the GEMM (cosine, or −distance for L2 through |q|²+|r|²−2q·r).
    func scanNearest(
        _ queries: [Float], count: Int, keep k: Int, metric: NeighborMetric, groups: Int,
        group: (UInt64) throws -> Int?
    ) throws -> [[Neighbor]] {
        let d = store.schema.dimension
        // Cosine compares directions: normalise the queries once; rows are divided by their norm below.
        var q = queries
        var queryNorms = [Float](repeating: 0, count: count)
        for i in 0..<count {
            var s: Float = 0
            for j in 0..<d { s += q[i * d + j] * q[i * d + j] }
            queryNorms[i] = s
            if metric == .cosine, s > 0 {
                let inverse = 1 / s.squareRoot()
                for j in 0..<d { q[i * d + j] *= inverse }
            }
        }
        var best = [[Neighbor]](repeating: [], count: count * groups)
        // The k-th best similarity of each list once it has k: most candidates fail this one
        // comparison and never touch the neighbour lists.
        var threshold = [Float](repeating: -.infinity, count: count * groups)
        var scores: [Float] = [], norms: [Float] = []
        try forEachEmbeddingBlock { rows in
            let n = rows.rowCount
            guard n > 0 else { return }
            if scores.count < count * n { scores = [Float](repeating: 0, count: count * n) }
            q.withUnsafeBufferPointer { qv in
                scores.withUnsafeMutableBufferPointer { sv in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(n), Int32(d), 1,
                                qv.baseAddress, Int32(d), rows.floats.baseAddress, Int32(d), 0, sv.baseAddress, Int32(n))
                }
            }
            // Per row: whether it is a candidate (and of which group), and its squared norm; then
            // each query scans its row of scores contiguously.
            var candidates: [(row: Int, group: Int)] = []
            candidates.reserveCapacity(n)
            if norms.count < n { norms = [Float](repeating: 0, count: n) }
            for r in 0..<n where rows.isLive(r) {
                guard let g = try group(rows.id(at: r)) else { continue }
                var norm: Float = 0
                let row = rows.floats.baseAddress! + r * d
                for j in 0..<d { norm += row[j] * row[j] }
                // Cosine needs 1/‖r‖; L2 needs ‖r‖².
                norms[r] = metric == .cosine ? (norm > 0 ? 1 / norm.squareRoot() : 0) : norm
                candidates.append((r, g))
            }
            for i in 0..<count {
                let base = i * n
                for (r, g) in candidates {
                    let list = i * groups + g
                    let dot = scores[base + r]
                    let similarity: Float
                    switch metric {
                    case .cosine: similarity = dot * norms[r]
                    case .l2: similarity = -max(queryNorms[i] + norms[r] - 2 * dot, 0).squareRoot()
                    }
                    if similarity < threshold[list] { continue }
                    let candidate = Neighbor(id: rows.id(at: r), similarity: similarity)
                    if best[list].count == k, !Neighbor.nearer(candidate, best[list][k - 1]) { continue }
                    var position = best[list].count
                    while position > 0 && Neighbor.nearer(candidate, best[list][position - 1]) { position -= 1 }
                    best[list].insert(candidate, at: position)
                    if best[list].count > k { best[list].removeLast() }
                    if best[list].count == k { threshold[list] = best[list][k - 1].similarity }
                }
            }
        }
        return best
    }
}
