import Foundation

/// What one shard contributes to a kNN-label query over a corpus: per query, for each distinct
/// entry label (sample ⊔ source) among its entries, the candidates its scan keeps (the k + 8
/// nearest by the GEMM) re-ranked by exact similarity; and each candidate's distribution and label.
struct KNNShardCandidates {
    /// Per query: entry label → candidates, nearest first by exact similarity (ties by id).
    var lists: [[TaintLabel: [Neighbor]]] = []
    /// Every candidate's label distribution and taint label, read in its shard.
    var entries: [UInt64: (distribution: [Float], taint: TaintLabel)] = [:]
}

extension Transaction {
    /// This store's candidates for ``Corpus/knnLabels(of:queries:k:from:metric:mode:lambda:where:clearance:)``:
    /// the scan of ``knnLabels(of:queries:k:from:metric:mode:lambda:include:)`` (k + 8 per label
    /// group, one group in the conservative mode), each candidate's exact similarity, distribution
    /// and label.
    func knnCandidates(
        of queries: [Float], queries count: Int, k: Int, from reference: LabelSetReference, metric: NeighborMetric, mode: KNNFlowMode,
        include: ((UInt64) throws -> Bool)?
    ) throws -> KNNShardCandidates {
        let d = store.schema.dimension
        let source = try labelSource(reference, for: "kNN labels")
        let entries: (group: [UInt64: Int], labels: [TaintLabel])
        switch source {
        case .stored(let set, let version): entries = try labelledEntries(set: set, version: version)
        case .projector(let loaded): entries = try regeneratedEntries(loaded)
        }
        let groups = mode == .permissive ? max(entries.labels.count, 1) : 1
        let lists = k > 0 && count > 0
            ? try scanNearest(queries, count: count, keep: k + KNNLabelGenerator.slack, metric: metric, groups: groups) { id in
                guard let g = entries.group[id] else { return nil }
                if let include, try !include(id) { return nil }
                return mode == .permissive ? g : 0
            }
            : Array(repeating: [], count: count * groups)
        var generator = KNNLabelGenerator(tx: self, source: source, path: store.path, k: k, metric: metric, lambda: 0, classes: store.schema.classes.count)
        var out = KNNShardCandidates()
        for i in 0..<count {
            let query = Array(queries[(i * d)..<((i + 1) * d)])
            var perLabel: [TaintLabel: [Neighbor]] = [:]
            for g in 0..<groups where !lists[i * groups + g].isEmpty {
                // The conservative mode has one group whatever the labels: any key stands for it.
                let label = mode == .permissive ? entries.labels[g] : .public
                var exact: [Neighbor] = []
                for candidate in lists[i * groups + g] {
                    exact.append(Neighbor(id: candidate.id, similarity: try generator.similarity(query, candidate.id)))
                    out.entries[candidate.id] = try generator.labelOf(candidate.id)
                }
                perLabel[label, default: []] += exact
            }
            out.lists.append(perLabel.mapValues { $0.sorted(by: Neighbor.nearer) })
        }
        return out
    }
}

extension Corpus {
    /// kNN labels over every shard, equal to one store's answer over the same samples
    /// (``Transaction/knnLabels(of:queries:k:from:metric:mode:lambda:include:)``): each shard
    /// returns, per query and entry label, the candidates its own scan keeps, with their exact
    /// similarities, distributions and labels; the merge joins the lists of each label across
    /// shards and runs the same exact re-ranking, output and permissive search on them. A
    /// context's k nearest are among the union of its labels' per-shard lists, as they are among
    /// one store's per-label lists.
    ///
    /// - Parameter filter: only samples matching it are candidates (bound in each shard).
    public func knnLabels(
        of queries: [Float], queries count: Int, k: Int, from reference: LabelSetReference, metric: NeighborMetric = .cosine,
        mode: KNNFlowMode = .permissive, lambda: Float = 0.1, where filter: QueryExpression?, clearance: Clearance
    ) throws -> [KNNLabelResult] {
        guard isSharded else {
            return try shards[0].read(clearance: clearance) { tx in
                try tx.knnLabels(of: queries, queries: count, k: k, from: reference, metric: metric, mode: mode, lambda: lambda,
                                 include: try filter.map { try tx.matcher(for: $0) })
            }
        }
        var lists = [[TaintLabel: [Neighbor]]](repeating: [:], count: count)
        var order: [TaintLabel] = []
        var generator = KNNLabelGenerator(tx: nil, source: nil, path: path, k: k, metric: metric, lambda: lambda, classes: schema.classes.count)
        for shard in shards {
            let part = try shard.read(clearance: clearance) { tx in
                try tx.knnCandidates(of: queries, queries: count, k: k, from: reference, metric: metric, mode: mode,
                                     include: try filter.map { try tx.matcher(for: $0) })
            }
            generator.labels.merge(part.entries) { a, _ in a }
            for (i, perLabel) in part.lists.enumerated() {
                for (label, candidates) in perLabel {
                    if !order.contains(label) { order.append(label) }
                    lists[i][label, default: []] += candidates
                }
            }
        }
        let d = schema.dimension
        return try (0..<count).map { i in
            let query = Array(queries[(i * d)..<((i + 1) * d)])
            let exact = Dictionary(lists[i].values.joined().map { ($0.id, $0.similarity) }) { a, _ in a }
            let groupLabels = mode == .permissive ? order : []
            let perGroup = mode == .permissive ? order.map { lists[i][$0] ?? [] } : [Array(lists[i].values.joined())]
            return try generator.label(query: query, lists: perGroup, groupLabels: groupLabels, mode: mode, presetExact: exact)
        }
    }
}
