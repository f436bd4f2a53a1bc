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
        // The GEMM's similarities depend on the block layout in their last bits (and L2's
        // |q|² + |r|² − 2q·r cancels badly for near neighbours): k + slack candidates are kept,
        // then re-ranked by exact similarity, so the answer is the same however the samples are
        // laid out in blocks, or split across the shards of a corpus.
        let candidates = try scanNearest(queries, count: count, keep: k + KNNLabelGenerator.slack, metric: metric, groups: 1) { id in
            if let include, try !include(id) { return nil }
            return 0
        }
        return try candidates.enumerated().map { i, list in
            let query = Array(queries[(i * d)..<((i + 1) * d)])
            var exact: [Neighbor] = []
            // One row at a time: memory stays at one embedding whatever the number of queries.
            for candidate in list {
                guard let row = try withSample(candidate.id, { $0.embedding() }) else { continue }
                exact.append(Neighbor(id: candidate.id, similarity: exactSimilarity(query, row, metric: metric)))
            }
            exact.sort(by: Neighbor.nearer)
            return Array(exact.prefix(k))
        }
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
        var scores: [Float] = []
        // Per row of a block: cosine scale 1/‖r‖ (L2: ‖r‖²), 0 or −∞ (not a candidate), group.
        var scale: [Float] = [], bias: [Float] = [], rowGroup: [Int] = []
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
            // Rounded up to whole vectors; padding rows are never candidates.
            let padded = (n + 7) / 8 * 8
            if scale.count < padded {
                scale = [Float](repeating: 0, count: padded)
                bias = [Float](repeating: -.infinity, count: padded)
                rowGroup = [Int](repeating: 0, count: padded)
            }
            for r in 0..<padded {
                guard r < n, rows.isLive(r), let g = try group(rows.id(at: r)) else {
                    scale[r] = 0
                    bias[r] = -.infinity
                    continue
                }
                let norm = squaredNorm(rows.floats.baseAddress! + r * d, d)
                // Cosine needs 1/‖r‖; L2 needs ‖r‖².
                scale[r] = metric == .cosine ? (norm > 0 ? 1 / norm.squareRoot() : 0) : norm
                bias[r] = 0
                rowGroup[r] = g
            }
            if groups > 1 {
                // Several lists per query: the rows of each group, compacted once per block, are
                // checked against that group's own threshold (one query-wide vector threshold
                // would be the loosest group's, and let most rows through).
                var members = [[Int]](repeating: [], count: groups)
                for r in 0..<n where bias[r] == 0 { members[rowGroup[r]].append(r) }
                scores.withUnsafeBufferPointer { sv in
                    scale.withUnsafeBufferPointer { scaleV in
                        for i in 0..<count {
                            let row = sv.baseAddress! + i * n
                            for g in 0..<groups where !members[g].isEmpty {
                                let list = i * groups + g
                                var t = threshold[list]
                                for c in members[g] {
                                    let similarity: Float
                                    switch metric {
                                    case .cosine: similarity = row[c] * scaleV[c]
                                    case .l2: similarity = -max(queryNorms[i] + scaleV[c] - 2 * row[c], 0).squareRoot()
                                    }
                                    if similarity < t { continue }
                                    if NeighborList.offer(Neighbor(id: rows.id(at: c), similarity: similarity), to: &best[list], keep: k) {
                                        t = best[list][k - 1].similarity
                                        threshold[list] = t
                                    }
                                }
                            }
                        }
                    }
                }
                return
            }
            scores.withUnsafeBufferPointer { sv in
                scale.withUnsafeBufferPointer { scaleV in
                    bias.withUnsafeBufferPointer { biasV in
                        for i in 0..<count {
                            let row = sv.baseAddress! + i * n
                            // One list per query (groups == 1: list i). Eight rows at a time: one
                            // vector comparison rejects most of them.
                            var r = 0
                            while r < n {
                                var pass: UInt8 = 0xFF
                                if r + 8 <= n {
                                    let dots = UnsafeRawPointer(row + r).loadUnaligned(as: SIMD8<Float>.self)
                                    let s = UnsafeRawPointer(scaleV.baseAddress! + r).loadUnaligned(as: SIMD8<Float>.self)
                                    let b = UnsafeRawPointer(biasV.baseAddress! + r).loadUnaligned(as: SIMD8<Float>.self)
                                    let t = threshold[i]
                                    let mask: SIMDMask<SIMD8<Int32>>
                                    switch metric {
                                    case .cosine:
                                        mask = (dots * s + b) .>= SIMD8(repeating: t)
                                    case .l2:
                                        // −√max(x, 0) ≥ t ⟺ x ≤ t² for t ≤ 0 (and always for t = −∞).
                                        let distance2 = SIMD8(repeating: queryNorms[i]) + s - 2 * dots
                                        mask = t == -.infinity ? (b .== 0) : (distance2 .<= SIMD8(repeating: t * t))
                                    }
                                    if !any(mask) { r += 8; continue }
                                    pass = 0
                                    for lane in 0..<8 where mask[lane] { pass |= 1 << lane }
                                }
                                for lane in 0..<min(8, n - r) where pass & (1 << lane) != 0 {
                                    let c = r + lane
                                    // Not a candidate (free, hidden, filtered out): −∞ ≥ −∞ lets it past the vector check.
                                    guard biasV[c] == 0 else { continue }
                                    let similarity: Float
                                    switch metric {
                                    case .cosine: similarity = row[c] * scaleV[c]
                                    case .l2: similarity = -max(queryNorms[i] + scaleV[c] - 2 * row[c], 0).squareRoot()
                                    }
                                    if similarity < threshold[i] { continue }
                                    if NeighborList.offer(Neighbor(id: rows.id(at: c), similarity: similarity), to: &best[i], keep: k) {
                                        threshold[i] = best[i][k - 1].similarity
                                    }
                                }
                                r += 8
                            }
                        }
                    }
                }
            }
        }
        return best
    }
}

/// A top-k list kept sorted nearest first.
enum NeighborList {
    /// Inserts `candidate` when it belongs among the `keep` nearest; returns true when the list
    /// is (now) full, so its last entry is the threshold.
    @inline(__always)
    static func offer(_ candidate: Neighbor, to list: inout [Neighbor], keep: Int) -> Bool {
        if list.count == keep, !Neighbor.nearer(candidate, list[keep - 1]) { return false }
        var position = list.count
        while position > 0 && Neighbor.nearer(candidate, list[position - 1]) { position -= 1 }
        list.insert(candidate, at: position)
        if list.count > keep { list.removeLast() }
        return list.count == keep
    }
}

/// ‖x‖² of `count` floats, eight lanes at a time.
@inline(__always)
func squaredNorm(_ x: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var j = 0
    while j + 8 <= count {
        let v = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)
        acc += v * v
        j += 8
    }
    var sum = acc.sum()
    while j < count { sum += x[j] * x[j]; j += 1 }
    return sum
}

/// The similarity of `query` and `row` with a fixed-order sum in double precision: cosine, or the
/// negative L2 distance. The same for the same two vectors wherever they are stored, unlike a
/// GEMM's, whose rounding depends on the blocking.
func exactSimilarity(_ query: [Float], _ row: [Float], metric: NeighborMetric) -> Float {
    switch metric {
    case .cosine:
        var dot = 0.0, qq = 0.0, rr = 0.0
        for j in 0..<row.count {
            dot += Double(query[j]) * Double(row[j])
            qq += Double(query[j]) * Double(query[j])
            rr += Double(row[j]) * Double(row[j])
        }
        return qq > 0 && rr > 0 ? Float(dot / (qq.squareRoot() * rr.squareRoot())) : 0
    case .l2:
        var sum = 0.0
        for j in 0..<row.count { let diff = Double(query[j]) - Double(row[j]); sum += diff * diff }
        return -Float(sum.squareRoot())
    }
}
