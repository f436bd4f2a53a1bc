import Foundation

/// What the corpus card reads: one store through a read transaction, or a sharded corpus (its
/// shards' rows merged in id order, so a corpus's card shows what its store's would).
protocol CardReading {
    /// The schema.
    var cardSchema: Schema { get }
    /// The clearance read under.
    var cardClearance: Clearance { get }
    /// The visible samples' count (for progress only).
    func cardSampleCount() throws -> Int
    /// Every visible sample, in id order.
    func forEachCardSample(_ body: (CardSample) throws -> Void) throws
    /// The label sources described: `given`, or every visible label set and usable projector.
    func cardLabelSources(_ given: [LabelSetReference]?) throws -> (references: [LabelSetReference], sources: [QueryLabelSource])
    /// Every visible sample's labels from `references`, in id order.
    func forEachCardRow(_ references: [LabelSetReference], _ body: (UInt64, [Label?]) throws -> Void) throws
    /// The agreement of `references` (``Transaction/agreement(of:where:)``).
    func cardAgreement(of references: [LabelSetReference]) throws -> Agreement
    /// The 2 nearest neighbours (cosine) of each of `count` queries.
    func cardNeighbours(_ queries: [Float], count: Int) throws -> [[Neighbor]]
    /// The provenance log: its records, its head, and whether it verifies.
    func cardProvenance() throws -> (records: [(id: UInt64, record: ProvenanceRecord)], head: String, verifies: Bool)
    /// Bytes on disk, when the clearance sees everything.
    func cardBytesOnDisk() throws -> Int?
}

extension Transaction {
    /// The corpus card of what this transaction's clearance sees (see ``CorpusCard``): one pass
    /// over the samples, one over the label sources (all visible label sets and projectors, or
    /// `labels`), one for their agreement, a kNN scan for near duplicates, and the provenance
    /// log. Memory: about 25 bytes a visible sample (embedding norms, and a set of embedding
    /// hashes), fixed-size sketches, and while agreement runs a C × C confusion per pair of
    /// sources.
    ///
    /// - Parameter progress: called as each step starts (done 0) and every 4,096 samples of the
    ///   two passes, with the step's name, the samples done and the step's total (0 when the
    ///   step is not counted in samples).
    /// - Throws: ``LabelError``, ``StoreError``.
    public func corpusCard(labels: [LabelSetReference]? = nil, progress: ((String, Int, Int) -> Void)? = nil) throws -> CorpusCard {
        try CorpusCard.build(from: self, labels: labels, progress: progress)
    }
}

extension CorpusCard {
    /// The card of what `source` shows: the passes ``Transaction/corpusCard(labels:progress:)`` describes.
    static func build(from source: some CardReading, labels: [LabelSetReference]?, progress: ((String, Int, Int) -> Void)?) throws -> CorpusCard {
        let schema = source.cardSchema
        let total = progress == nil ? 0 : try source.cardSampleCount()
        func report(_ step: String, _ done: Int, every: Int = 4096) { if done % every == 0 { progress?(step, done, total) } }
        report("samples", 0)
        var samples = SampleTally(dimension: schema.dimension)
        try source.forEachCardSample { samples.add($0); report("samples", samples.count) }
        progress?("samples", samples.count, total)
        report("labels", 0)
        let (references, sources) = try source.cardLabelSources(labels)
        var tallies = sources.map { LabelSourceTally(source: $0, classes: schema.classes.count) }
        var unlabelled = 0, seen = 0
        try source.forEachCardRow(references) { _, row in
            if row.allSatisfy({ $0 == nil || ($0!.top1 == nil && ($0!.multi ?? []).isEmpty) }) { unlabelled += 1 }
            for (i, label) in row.enumerated() { if let label { tallies[i].add(label) } }
            seen += 1
            report("labels", seen)
        }
        progress?("labels", seen, total)
        progress?("agreement", 0, 0)
        let (pairs, confusions, note) = try cardAgreement(source, references)
        progress?("near duplicates", 0, 0)
        let near = try nearDuplicates(source, samples.queries)
        progress?("provenance", 0, 0)
        let log = try source.cardProvenance()
        let clearance = source.cardClearance
        return CorpusCard(
            clearance: clearance == .all ? "all" : clearance == .public ? "public" : clearance.description,
            composition: CorpusCard.Composition(
                samples: samples.count, dimension: schema.dimension, elementType: schema.elementType.rawValue, classes: schema.classes,
                bytesOnDisk: try source.cardBytesOnDisk(), fields: samples.fieldSummaries(), fieldsNotShown: samples.fieldsNotShown.count,
                payloadSizes: samples.payloadSizes),
            labelSources: tallies.map { $0.summary(classes: schema.classes.count) },
            pairs: pairs, confusions: confusions, agreementNote: note,
            taintLabels: samples.taintCounts(), clearanceViews: samples.clearanceViews(),
            activities: log.records.suffix(1000).map { CorpusCard.Activity($0.id, $0.record) },
            provenanceRecords: log.records.count, provenanceHead: log.head, provenanceVerifies: log.verifies,
            norms: samples.normHistogram(), exactDuplicates: samples.duplicates,
            nearDuplicateQueries: near.queries, nearDuplicates: near.found, unlabelled: unlabelled)
    }
}

extension Transaction: CardReading {
    var cardSchema: Schema { store.schema }
    var cardClearance: Clearance { clearance }
    func cardSampleCount() throws -> Int { try count() }
    func forEachCardSample(_ body: (CardSample) throws -> Void) throws {
        try forEachSample { try body(CardSample($0)); return true }
    }
    func cardLabelSources(_ given: [LabelSetReference]?) throws -> (references: [LabelSetReference], sources: [QueryLabelSource]) {
        let references = try given ?? visibleLabelSources()
        return (references, try references.map { try labelSource($0, for: "the corpus card") })
    }
    func forEachCardRow(_ references: [LabelSetReference], _ body: (UInt64, [Label?]) throws -> Void) throws {
        try query(nil, labels: references, body)
    }
    func cardAgreement(of references: [LabelSetReference]) throws -> Agreement { try agreement(of: references) }
    func cardNeighbours(_ queries: [Float], count: Int) throws -> [[Neighbor]] {
        try nearestNeighbors(of: queries, queries: count, k: 2, metric: .cosine)
    }
    func cardProvenance() throws -> (records: [(id: UInt64, record: ProvenanceRecord)], head: String, verifies: Bool) {
        let log = try verifyProvenanceLog()
        return (try provenanceRecords(), log.head, log.firstBad == nil)
    }
    func cardBytesOnDisk() throws -> Int? { try seesEverything ? store.bytesOnDisk : nil }
}

extension Transaction {
    /// Label sets whose latest version this clearance may read, then projectors it may use.
    func visibleLabelSources() throws -> [LabelSetReference] {
        let allSets = try labelSets()
        let sets = allSets.filter { set in
            // Agreement and label statistics compare one label per sample: per-view sets are not sources.
            guard !set.perView else { return false }
            guard let latest = set.versions.last(where: { !$0.isDropped }) else { return false }
            return clearance.admits(latest.sourceLabel)
        }
        // A projector whose version or base head (which may have gained secrecy since the fit)
        // the clearance does not admit cannot regenerate: it is left out, not an error.
        // A projector named like a label set cannot be named apart from it (`label(NAME)`
        // means the set): only the set is described.
        let setNames = Set(allSets.map(\.name))
        let projectors = try projectors().filter { projector in
            guard !setNames.contains(projector.name) else { return false }
            do { _ = try load(LabelSetReference(name: projector.name)); return true } catch ProjectorError.notCleared { return false }
        }
        return sets.map { LabelSetReference(name: $0.name) } + projectors.map { LabelSetReference(name: $0.name) }
    }
}

extension CorpusCard {
    /// The most confusion cells (pairs × C²) the card's agreement pass holds: 32M, 256 MB.
    static let maximumCardConfusionCells = 32 << 20

    /// Pairwise agreement and the most confused class pairs, or why they are missing.
    static func cardAgreement(_ source: some CardReading, _ references: [LabelSetReference]) throws -> ([CorpusCard.Pair], [CorpusCard.Confusion], String?) {
        guard references.count >= 2 else { return ([], [], "fewer than two label sources") }
        let c = source.cardSchema.classes.count, pairCount = references.count * (references.count - 1) / 2
        guard c <= Transaction.maximumConfusionClasses else {
            return ([], [], "more than \(Transaction.maximumConfusionClasses) classes: agreement is not computed")
        }
        // Every pair keeps a C × C confusion while the pass runs.
        guard pairCount * c * c <= Self.maximumCardConfusionCells else {
            return ([], [], "\(pairCount) pairs of sources × \(c)² classes exceed the card's \(Self.maximumCardConfusionCells) confusion cells: name fewer sources with --labels")
        }
        var pairs: [CorpusCard.Pair] = []
        var confusions = BoundedSelection<CorpusCard.Confusion>(capacity: 20) {
            ($0.count, $1.a, $1.b, $1.classA, $1.classB) > ($1.count, $0.a, $0.b, $0.classA, $0.classB)
        }
        func add(_ pair: PairAgreement) {
            pairs.append(CorpusCard.Pair(a: pair.a, b: pair.b, count: pair.count, agreement: pair.agreement, kappa: pair.kappa))
            for (x, row) in pair.confusion.enumerated() {
                for (y, n) in row.enumerated() where x != y && n > 0 {
                    confusions.insert(CorpusCard.Confusion(a: pair.a, b: pair.b, classA: x, classB: y, count: n))
                }
            }
        }
        do {
            // One pass for every pair; when some pair labels no common sample, pair by pair,
            // showing that pair as such rather than failing.
            for pair in try source.cardAgreement(of: references).pairs { add(pair) }
        } catch AgreementError.noCommonSample {
            for i in references.indices {
                for j in references.indices where j > i {
                    do { add(try source.cardAgreement(of: [references[i], references[j]]).pairs[0]) } catch AgreementError.noCommonSample(let a, let b) {
                        pairs.append(CorpusCard.Pair(a: a, b: b, count: 0, agreement: 0, kappa: nil))
                    }
                }
            }
        }
        return (pairs, confusions.sorted(), nil)
    }

    /// Of the sampled queries, how many have another visible sample at cosine ≥ 0.99.
    static func nearDuplicates(_ source: some CardReading, _ queries: [(id: UInt64, embedding: [Float])]) throws -> (queries: Int, found: Int) {
        guard !queries.isEmpty else { return (0, 0) }
        let hits = try source.cardNeighbours(queries.flatMap(\.embedding), count: queries.count)
        let found = zip(queries, hits).filter { query, neighbours in neighbours.contains { $0.id != query.id && $0.similarity >= 0.99 } }.count
        return (queries.count, found)
    }
}

extension CorpusCard.Activity {
    init(_ id: UInt64, _ record: ProvenanceRecord) {
        let name = { (e: ProvenanceEntity) in e.version.map { "\(e.name)@\($0)" } ?? e.name }
        self.init(id: id, activity: record.activity, agent: record.agent, timeMilliseconds: record.timeMilliseconds,
                  used: record.used.map(name), generated: record.generated.map(name), parameters: record.parameters)
    }
}

/// Equal-width bins over [lower, upper].
struct HistogramTally {
    let lower: Double, upper: Double
    var counts: [Int]

    init(lower: Double, upper: Double, bins: Int = 20) {
        self.lower = lower
        self.upper = max(upper, lower)
        counts = [Int](repeating: 0, count: bins)
    }

    mutating func add(_ value: Double) {
        guard value.isFinite else { return }
        // Halved, so that a span of ±1e308 does not overflow to infinity.
        let position = (value / 2 - lower / 2) / (upper / 2 - lower / 2) * Double(counts.count)
        let bin = position.isFinite ? Int(min(max(position, 0), Double(counts.count - 1))) : 0
        counts[bin] += 1
    }

    func histogram(sampled: Int? = nil) -> CorpusCard.Histogram {
        CorpusCard.Histogram(lower: lower, upper: upper, counts: counts, sampled: sampled)
    }
}

/// One label source's class balance, confidence and entropy.
struct LabelSourceTally {
    let source: QueryLabelSource
    var labelled = 0
    var classCounts: [Int]
    var confidence = HistogramTally(lower: 0, upper: 1)
    var entropy: HistogramTally

    init(source: QueryLabelSource, classes: Int) {
        self.source = source
        classCounts = [Int](repeating: 0, count: classes)
        entropy = HistogramTally(lower: 0, upper: log(Double(max(classes, 2))))
    }

    mutating func add(_ label: Label) {
        if let multi = label.multi {
            // A multi-label: each of its classes counts; its distribution is uniform over them.
            guard !multi.isEmpty else { return }
            labelled += 1
            for c in multi { classCounts[c] += 1 }
            entropy.add(log(Double(multi.count)))
            return
        }
        guard let top = label.top1 else { return }
        labelled += 1
        classCounts[top.classIndex] += 1
        confidence.add(label.hard != nil ? 1 : Double(top.confidence))
        entropy.add(label.hard != nil ? 0 : Self.entropy(label.distribution(classCount: classCounts.count)))
    }

    /// −Σ p ln p in nats; runs of equal probabilities (a compact label's even leftover) share
    /// one logarithm.
    static func entropy(_ p: [Float]) -> Double {
        var sum = 0.0, last: (p: Float, term: Double) = (-1, 0)
        for x in p where x > 0 {
            if x != last.p { last = (x, Double(x) * log(Double(x))) }
            sum -= last.term
        }
        return max(sum, 0)
    }

    func summary(classes: Int) -> CorpusCard.LabelSource {
        switch source {
        case .stored(let set, let version):
            return CorpusCard.LabelSource(
                name: source.name, kind: "label_set", labelled: labelled, classCounts: classCounts,
                confidence: confidence.histogram(), entropy: entropy.histogram(), codec: set.codec?.description,
                versions: set.versions, projector: nil, taint: set.versions[version - 1].sourceLabel)
        case .projector(let loaded):
            return CorpusCard.LabelSource(
                name: source.name, kind: "projector", labelled: labelled, classCounts: classCounts,
                confidence: confidence.histogram(), entropy: entropy.histogram(), codec: nil, versions: [],
                projector: loaded.version, taint: loaded.taint,
                fittedOn: loaded.sourceSet)
        }
    }
}
