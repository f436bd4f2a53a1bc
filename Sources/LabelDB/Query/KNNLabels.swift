import Foundation

/// How a kNN-generated label's flow label is computed.
public enum KNNFlowMode: String, Sendable, CaseIterable {
    /// The join of the labels of all k neighbours (each row's label includes the source of the
    /// import that wrote it); the output is the one computed from all visible entries.
    case conservative
    /// The permissive rule of Siddiqui et al.: the least restrictive context whose regenerated
    /// output is λ-similar to the full one, and the output regenerated from that context alone.
    case permissive
}

/// A soft label generated for one query from its nearest labelled neighbours, with its flow labels.
public struct KNNLabelResult: Sendable, Equatable {
    /// The returned soft label (C probabilities): regenerated under ``context`` for the
    /// permissive mode, from all visible entries for the conservative mode.
    public var probabilities: [Float]
    /// The flow label the returned output carries (permissive mode: ⊑ ``conservativeLabel``).
    public var label: TaintLabel
    /// The join of the labels of the k nearest visible labelled entries (each a sample's label ⊔
    /// the source of the import that wrote its row; public when there are none).
    public var conservativeLabel: TaintLabel
    /// The neighbours the returned output was computed from, nearest first (ties by smaller id).
    public var neighbors: [Neighbor]
    /// The ids among ``neighbors`` with non-zero weight: the why-provenance of the output, ascending.
    public var witness: [UInt64]
    /// The output computed from all visible entries (the reference the permissive search compares
    /// with). It carries ``conservativeLabel``, not ``label``: hand on ``probabilities`` instead.
    public var fullProbabilities: [Float]
    /// The secrecy tags of the chosen context: entries whose secrecy is a subset of these (and whose
    /// integrity includes the conservative label's) were candidates; equals ``label``'s secrecy.
    public var context: [String]
    /// Candidate contexts whose output the search regenerated (1 for the conservative mode).
    public var contextsTried: Int
}

extension Transaction {
    /// Generates a soft label for each query from its `k` nearest visible entries that have a
    /// label in `reference`, and gives it a flow label (format-spec/cli.md, `knn --labels`).
    /// `reference` names a label set version, or else a projector, which labels every visible
    /// sample (its labels regenerated on read, carrying the sample's label ⊔ the projector's).
    ///
    /// Weights: cosine similarity clipped at 0 for `.cosine`; 1 / (1 + distance) for `.l2`. The
    /// output is the weighted average of the neighbours' distributions, renormalised (uniform when
    /// every weight is 0), recomputed from the chosen neighbours with fixed-order dot products in
    /// ascending id order, so equal inputs give bit-equal outputs whatever the GEMM blocking.
    ///
    /// Permissive mode: with T the conservative label's secrecy tags, candidates S ⊆ T are
    /// searched depth-first from T (children: S minus one tag, in lexicographic order of the tag
    /// removed), descending only from accepted nodes; the context of S is every visible labelled
    /// entry whose secrecy ⊆ S and whose integrity ⊇ the conservative label's; S is accepted when
    /// the output regenerated from its context alone (its own k nearest) has the full output's
    /// top-1 class and a total-variation distance ≤ `lambda` (an empty context, whose output is
    /// the uninformative uniform distribution, is never accepted). Of the minimal accepted nodes, the
    /// one with the fewest tags (then the lexicographically smallest) is chosen. Its output is
    /// returned, labelled with secrecy S (for a minimal S, exactly the tags its neighbours' rows
    /// carry, their sources' included) and the conservative label's integrity, since every
    /// candidate of the context had at least that much. So the
    /// output depends only on entries whose label flows to the returned label (see
    /// ``knnOutput(of:queries:k:from:metric:flowingTo:include:)``), and the label is ⊑ the conservative one.
    ///
    /// Cost: one scan, keeping per query a top-k for each distinct label among the entries, so a
    /// candidate context's k nearest are a merge of the lists of the labels it admits. With G
    /// distinct labels, memory is queries × G × k neighbours and each candidate merges up to G lists.
    ///
    /// - Throws: ``LabelError/unknownLabelSet(_:)``, ``LabelError/unknownVersion(set:version:latest:)``.
    public func knnLabels(
        of queries: [Float], queries count: Int, k: Int, from reference: LabelSetReference,
        metric: NeighborMetric = .cosine, mode: KNNFlowMode = .permissive, lambda: Float = 0.1,
        include: ((UInt64) throws -> Bool)? = nil
    ) throws -> [KNNLabelResult] {
        let d = store.schema.dimension
        precondition(queries.count == count * d, "queries must be count × dimension")
        let (source, entries) = try knnSetup(reference)
        // Groups: one per distinct label in the permissive mode; a single one for the conservative.
        let groups = mode == .permissive ? max(entries.labels.count, 1) : 1
        // Extra candidates per list absorb GEMM rounding before the exact re-ranking below.
        let slack = KNNLabelGenerator.slack
        let lists = k > 0 && count > 0
            ? try scanNearest(queries, count: count, keep: k + slack, metric: metric, groups: groups) { id in
                guard let g = entries.group[id] else { return nil }
                if let include, try !include(id) { return nil }
                return mode == .permissive ? g : 0
            }
            : Array(repeating: [], count: count * groups)
        var generator = KNNLabelGenerator(tx: self, source: source, path: store.path, k: k, metric: metric, lambda: lambda, classes: store.schema.classes.count)
        var results: [KNNLabelResult] = []
        results.reserveCapacity(count)
        for i in 0..<count {
            let query = Array(queries[(i * d)..<((i + 1) * d)])
            let perGroup = Array(lists[(i * groups)..<((i + 1) * groups)])
            results.append(try generator.label(query: query, lists: perGroup, groupLabels: mode == .permissive ? entries.labels : [], mode: mode))
        }
        return results
    }

    /// The output kNN labelling gives each query when only entries whose label flows to `bound`
    /// are candidates: what ``knnLabels(of:queries:k:from:metric:mode:lambda:include:)`` returns
    /// under the label it chose (its `probabilities`, `neighbors` and `witness`; the `label` field
    /// is `bound`). By construction it does not depend on any entry whose label does not flow to
    /// `bound`.
    public func knnOutput(
        of queries: [Float], queries count: Int, k: Int, from reference: LabelSetReference,
        metric: NeighborMetric = .cosine, flowingTo bound: TaintLabel, include: ((UInt64) throws -> Bool)? = nil
    ) throws -> [KNNLabelResult] {
        let d = store.schema.dimension
        precondition(queries.count == count * d, "queries must be count × dimension")
        let (source, entries) = try knnSetup(reference)
        let admitted = entries.labels.map { $0.flows(to: bound) }
        let lists = k > 0 && count > 0
            ? try scanNearest(queries, count: count, keep: k + KNNLabelGenerator.slack, metric: metric, groups: 1) { id in
                guard let g = entries.group[id], admitted[g] else { return nil }
                if let include, try !include(id) { return nil }
                return 0
            }
            : Array(repeating: [], count: count)
        var generator = KNNLabelGenerator(tx: self, source: source, path: store.path, k: k, metric: metric, lambda: 0, classes: store.schema.classes.count)
        return try (0..<count).map { i in
            let query = Array(queries[(i * d)..<((i + 1) * d)])
            generator.exact = [:]
            let out = try generator.output(query: query, neighbors: try generator.nearest(query: query, lists: [lists[i]]) { _ in true })
            return KNNLabelResult(
                probabilities: out.probabilities, label: bound, conservativeLabel: out.label, neighbors: out.neighbors, witness: out.witness,
                fullProbabilities: out.probabilities, context: bound.secrecy.sorted, contextsTried: 1)
        }
    }

    /// The label source `reference` names (a label set version, else a projector regenerating on
    /// read) and its visible labelled entries. (No version's source is joined in as such: each
    /// entry's label already carries the source of the import that wrote its row, which is the
    /// only source its output can depend on.)
    private func knnSetup(_ reference: LabelSetReference) throws -> (QueryLabelSource, (group: [UInt64: Int], labels: [TaintLabel])) {
        let source = try labelSource(reference, for: "kNN labels")
        switch source {
        case .stored(let set, let version): return (source, try labelledEntries(set: set, version: version))
        case .projector(let loaded): return (source, try regeneratedEntries(loaded))
        }
    }

    /// The visible entries with a label in `set@version`, each with the index of its label
    /// (sample ⊔ source) among the distinct labels found (rows are checked, not decoded).
    func labelledEntries(set: LabelSet, version: Int) throws -> (group: [UInt64: Int], labels: [TaintLabel]) {
        var group: [UInt64: Int] = [:]
        var labels: [TaintLabel] = []
        var index: [TaintLabel: Int] = [:]
        // The newest row ≤ version that the clearance admits is the entry: a hidden newer row
        // leaves the visible older one in place.
        try forEachVisibleRowInStorageOrder(set: set, version: version) { id, _, _, taint in
            let g: Int
            if let known = index[taint] { g = known } else { g = labels.count; labels.append(taint); index[taint] = g }
            group[id] = g
            return true
        }
        return (group, labels)
    }

    /// The visible samples, each an entry of a projector (it labels every sample), with the
    /// index of its label (sample ⊔ projector, what ``regenerate(_:with:)`` gives) among the
    /// distinct labels found.
    func regeneratedEntries(_ loaded: LoadedProjector) throws -> (group: [UInt64: Int], labels: [TaintLabel]) {
        var group: [UInt64: Int] = [:]
        var labels: [TaintLabel] = []
        var index: [UInt32: Int] = [:]
        try forEach(.samples) { id, bytes in
            let record = try decodeSampleRecord(id: id, bytes)
            guard try admits(labelID: record.taintLabel) else { return true }
            if let known = index[record.taintLabel] {
                group[id] = known
            } else {
                let g = labels.count
                labels.append(loaded.taint.join(try taintLabel(id: record.taintLabel, sample: id)))
                index[record.taintLabel] = g
                group[id] = g
            }
            return true
        }
        return (group, labels)
    }
}

/// The per-query work of ``Transaction/knnLabels(of:queries:k:from:metric:mode:lambda:include:)``:
/// exact re-ranking, outputs, and the permissive search. Decoded labels, embeddings and exact
/// similarities are cached across queries and candidates.
struct KNNLabelGenerator {
    /// Candidates kept per list beyond k, so GEMM rounding cannot push one of the exact k nearest out.
    static let slack = 8
    /// Where embeddings and labels are read; nil when a corpus's shards gave them (``labels``
    /// and the preset exact similarities then hold every candidate).
    let tx: Transaction?
    let source: QueryLabelSource?
    /// The store or corpus path, for errors.
    let path: String
    let k: Int
    let metric: NeighborMetric
    let lambda: Float
    let classes: Int
    var labels: [UInt64: (distribution: [Float], taint: TaintLabel)] = [:]
    var embeddings: [UInt64: [Float]] = [:]

    init(tx: Transaction?, source: QueryLabelSource?, path: String, k: Int, metric: NeighborMetric, lambda: Float, classes: Int) {
        self.tx = tx
        self.source = source
        self.path = path
        self.k = k
        self.metric = metric
        self.lambda = lambda
        self.classes = classes
    }

    /// An output and what it was computed from.
    struct Output {
        var neighbors: [Neighbor]
        var probabilities: [Float]
        var witness: [UInt64]
        var label: TaintLabel
    }

    /// Exact similarities of the current query, by id.
    var exact: [UInt64: Float] = [:]

    /// The k nearest among the union of the admitted lists, re-ranked by exact similarity.
    mutating func nearest(query: [Float], lists: [[Neighbor]], _ admitted: (Int) -> Bool) throws -> [Neighbor] {
        var pool: [Neighbor] = []
        for (g, list) in lists.enumerated() where admitted(g) {
            for candidate in list {
                if exact[candidate.id] == nil { exact[candidate.id] = try similarity(query, candidate.id) }
                pool.append(Neighbor(id: candidate.id, similarity: exact[candidate.id]!))
            }
        }
        pool.sort(by: Neighbor.nearer)
        return Array(pool.prefix(k))
    }

    mutating func label(query: [Float], lists: [[Neighbor]], groupLabels: [TaintLabel], mode: KNNFlowMode,
                        presetExact: [UInt64: Float] = [:]) throws -> KNNLabelResult {
        exact = presetExact
        func nearest(_ admitted: (Int) -> Bool) throws -> [Neighbor] {
            try self.nearest(query: query, lists: lists, admitted)
        }
        let full = try output(query: query, neighbors: try nearest { _ in true })
        let conservative = full.label
        guard mode == .permissive else {
            return KNNLabelResult(
                probabilities: full.probabilities, label: conservative, conservativeLabel: conservative, neighbors: full.neighbors,
                witness: full.witness, fullProbabilities: full.probabilities, context: conservative.secrecy.sorted, contextsTried: 1)
        }
        guard case .tags(let top) = conservative.secrecy, case .tags(let floor) = conservative.integrity else {
            preconditionFailure("stored labels name their tags")
        }
        // The context of S: the labels that flow to (S, floor) — floor the conservative integrity.
        // That pair is the label the output carries when S is chosen, which is what makes the
        // output safe under it.
        func contextLabel(_ s: Set<String>) -> TaintLabel {
            TaintLabel(secrecy: .tags(s), integrity: .tags(floor))
        }
        func admits(_ s: Set<String>) -> (Int) -> Bool {
            let bound = contextLabel(s)
            // With no visible labelled entry there are no groups, and one empty list stands in.
            return { g in g < groupLabels.count && groupLabels[g].flows(to: bound) }
        }
        var outputs: [Set<String>: Output] = [:]
        var accepted: [Set<String>: Bool] = [:]
        let fullTop = argmax(full.probabilities)
        func isAccepted(_ s: Set<String>) throws -> Bool {
            if let known = accepted[s] { return known }
            let out = try output(query: query, neighbors: try nearest(admits(s)))
            outputs[s] = out
            // A context with no labelled entry "answers" with the uniform distribution, which says
            // nothing about the query: it never stands in for a real answer.
            let ok = (!out.neighbors.isEmpty || full.neighbors.isEmpty)
                && argmax(out.probabilities) == fullTop && totalVariation(out.probabilities, full.probabilities) <= lambda
            accepted[s] = ok
            return ok
        }
        // Depth-first from T, descending only from accepted nodes; minimal = no accepted child.
        var minimal: [Set<String>] = []
        var visited = Set<Set<String>>()
        func search(_ s: Set<String>) throws {
            guard visited.insert(s).inserted else { return }
            var anyChild = false
            for tag in s.sorted() {
                var child = s
                child.remove(tag)
                if try isAccepted(child) {
                    anyChild = true
                    try search(child)
                }
            }
            if !anyChild { minimal.append(s) }
        }
        _ = try isAccepted(top)   // always accepted: T's context holds the full neighbours
        try search(top)
        let chosen = minimal.min { a, b in
            a.count != b.count ? a.count < b.count : a.sorted().lexicographicallyPrecedes(b.sorted())
        } ?? top
        let out = outputs[chosen]!
        // The label of the context: S, which for a minimal S is exactly the join of the used
        // neighbours' secrecy (a tag none of them carries could be removed without changing the
        // output), and the integrity floor every candidate of the context had (an unused candidate
        // could have been chosen, so the output vouches for no more).
        let label = contextLabel(chosen)
        // Contexts were chosen by the labels the taint partitions give; the neighbours' labels
        // come from their records. They agree unless the store is damaged.
        for neighbor in out.neighbors where !(try labelOf(neighbor.id).taint.flows(to: label)) {
            throw StoreError.corruptRecord(store: path, table: Table.taintMembers.rawValue, key: "sample \(neighbor.id)",
                                           detail: "the taint partitions disagree with the sample record; run verify")
        }
        return KNNLabelResult(
            probabilities: out.probabilities, label: label, conservativeLabel: conservative, neighbors: out.neighbors,
            witness: out.witness, fullProbabilities: full.probabilities, context: label.secrecy.sorted, contextsTried: outputs.count)
    }

    /// The output of `neighbors`: weights, then the weighted average of their distributions,
    /// accumulated in ascending id order; and the join of their labels (public for none: the
    /// uniform output then depends on no data).
    mutating func output(query: [Float], neighbors: [Neighbor]) throws -> Output {
        var probabilities = [Float](repeating: 0, count: classes)
        var joined: TaintLabel? = nil
        var total: Float = 0
        var witness: [UInt64] = []
        for neighbor in neighbors.sorted(by: { $0.id < $1.id }) {
            let entry = try labelOf(neighbor.id)
            joined = joined.map { $0.join(entry.taint) } ?? entry.taint
            let weight: Float = metric == .cosine ? max(neighbor.similarity, 0) : 1 / (1 - neighbor.similarity)
            guard weight > 0 else { continue }
            witness.append(neighbor.id)
            total += weight
            for c in 0..<classes { probabilities[c] += weight * entry.distribution[c] }
        }
        if total > 0 {
            for c in 0..<classes { probabilities[c] /= total }
        } else {
            probabilities = [Float](repeating: 1 / Float(classes), count: classes)
        }
        return Output(neighbors: neighbors, probabilities: probabilities, witness: witness, label: joined ?? .public)
    }

    /// Exact similarity of `query` and the stored embedding of `id`, with a fixed-order sum.
    mutating func similarity(_ query: [Float], _ id: UInt64) throws -> Float {
        exactSimilarity(query, try embedding(id), metric: metric)
    }

    mutating func embedding(_ id: UInt64) throws -> [Float] {
        if let known = embeddings[id] { return known }
        guard let row = try tx?.withSample(id, { $0.embedding() }) else { throw StoreError.sampleNotFound(id) }
        embeddings[id] = row
        return row
    }

    mutating func labelOf(_ id: UInt64) throws -> (distribution: [Float], taint: TaintLabel) {
        if let known = labels[id] { return known }
        let entry: (distribution: [Float], taint: TaintLabel)
        guard let tx, let source else { throw StoreError.sampleNotFound(id) }
        switch source {
        case .stored(let set, let version):
            guard let label = try tx.label(of: id, set: set, version: version) else { throw StoreError.sampleNotFound(id) }
            entry = (label.distribution(classCount: classes), label.taint)
        case .projector(let loaded):
            guard let regenerated = try tx.regenerate([id], with: loaded).first else { throw StoreError.sampleNotFound(id) }
            entry = (regenerated.probabilities, regenerated.taint)
        }
        labels[id] = entry
        return entry
    }
}

/// Total-variation distance: half the L1 distance.
func totalVariation(_ p: [Float], _ q: [Float]) -> Float {
    var sum: Float = 0
    for i in p.indices { sum += abs(p[i] - q[i]) }
    return sum / 2
}

/// The index of the largest value (ties: the smaller index).
func argmax(_ values: [Float]) -> Int {
    values.withUnsafeBufferPointer { argmax($0) }
}
