import Foundation

extension Corpus {
    /// The corpus card (``Transaction/corpusCard(labels:progress:)``) of the store, or of every
    /// shard: the samples and their labels merged in id order, so the figures are the store's
    /// they were split from; label-set versions as ``labelSets(clearance:)`` combines them; near
    /// duplicates by the corpus's kNN. Provenance: shard 0's log (it holds the store's history
    /// and a record of every corpus-level write), marked verified only when every shard's chain
    /// verifies; bytes on disk summed over the shards.
    public func card(labels: [LabelSetReference]? = nil, clearance: Clearance, progress: ((String, Int, Int) -> Void)? = nil) throws -> CorpusCard {
        guard isSharded else { return try shards[0].read(clearance: clearance) { try $0.corpusCard(labels: labels, progress: progress) } }
        // Every pass reads one snapshot, as a store's card reads one transaction.
        return try withSnapshot(clearance: clearance) { snapshot in
            let whole = Dictionary(uniqueKeysWithValues: try labelSets(clearance: clearance, in: snapshot).map { ($0.name, $0) })
            var card = try CorpusCard.build(from: CorpusCardReader(corpus: self, clearance: clearance, whole: whole, snapshot: snapshot),
                                            labels: labels, progress: progress)
            for index in card.labelSources.indices {
                if let set = card.labelSources[index].fittedOn { card.labelSources[index].fittedOn = whole[set.name] ?? set }
            }
            return card
        }
    }
}

/// A sharded corpus as the card reads it (see ``Corpus/card(labels:clearance:progress:)``).
struct CorpusCardReader: CardReading {
    let corpus: Corpus
    let clearance: Clearance
    /// The label sets with their versions combined over the shards, by name.
    let whole: [String: LabelSet]
    /// The transactions every pass reads.
    let snapshot: CorpusSnapshot

    var cardSchema: Schema { corpus.schema }
    var cardClearance: Clearance { clearance }

    func cardSampleCount() throws -> Int {
        try snapshot.transactions.reduce(0) { total, tx in total + (try tx.count()) }
    }

    func forEachCardSample(_ body: (CardSample) throws -> Void) throws {
        try corpus.merge(clearance: clearance, in: snapshot, by: { $0.id < $1.id }, produce: { _, tx, emit in
            try tx.forEachSample { try emit(CardSample($0)) }
        }, consume: { try body($0); return true })
    }

    func cardLabelSources(_ given: [LabelSetReference]?) throws -> (references: [LabelSetReference], sources: [QueryLabelSource]) {
        // Every shard holds the same sets and projectors; a set's versions are the combined ones.
        let tx = snapshot.transactions[0]
        do {
            let references = try given ?? tx.visibleLabelSources()
            let sources = try references.map { reference -> QueryLabelSource in
                let source = try tx.labelSource(reference, for: "the corpus card")
                guard case .stored(let set, let version) = source, let combined = whole[set.name] else { return source }
                return .stored(combined, version)
            }
            return (references, sources)
        }
    }

    func forEachCardRow(_ references: [LabelSetReference], _ body: (UInt64, [Label?]) throws -> Void) throws {
        try corpus.forEachLabelledSample(nil, labels: references, clearance: clearance, in: snapshot, body)
    }

    func cardAgreement(of references: [LabelSetReference]) throws -> Agreement {
        try corpus.agreement(of: references, clearance: clearance, in: snapshot)
    }

    func cardNeighbours(_ queries: [Float], count: Int) throws -> [[Neighbor]] {
        try corpus.nearestNeighbors(of: queries, queries: count, k: 2, metric: .cosine, where: nil, clearance: clearance, in: snapshot)
    }

    func cardProvenance() throws -> (records: [(id: UInt64, record: ProvenanceRecord)], head: String, verifies: Bool) {
        let verifies = try snapshot.transactions.allSatisfy { try $0.verifyProvenanceLog().firstBad == nil }
        let tx = snapshot.transactions[0]
        return (try tx.provenanceRecords(), try tx.verifyProvenanceLog().head, verifies)
    }

    func cardBytesOnDisk() throws -> Int? {
        var total = 0
        for (shard, tx) in zip(corpus.shards, snapshot.transactions) {
            guard try tx.seesEverything else { return nil }
            total += shard.bytesOnDisk
        }
        return total
    }
}
