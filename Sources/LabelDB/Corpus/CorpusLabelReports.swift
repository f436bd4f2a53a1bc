import Foundation

/// A sample's labels from a list of sources, as a corpus's merge passes them on.
struct LabelledSample: Sendable {
    var id: UInt64
    var labels: [Label?]
}

extension Corpus {
    /// Every sample `filter` selects (all when nil) that the clearance sees, with its labels
    /// from `labels` (label sets or projectors; nil where it has none), in id order across the
    /// shards: each shard's query on a thread of its own, merged. For a store, its query.
    public func forEachLabelledSample(
        _ filter: QueryExpression?, labels: [LabelSetReference], clearance: Clearance, in snapshot: CorpusSnapshot? = nil,
        _ body: (UInt64, [Label?]) throws -> Void
    ) throws {
        try merge(clearance: clearance, in: snapshot, by: { $0.id < $1.id }, produce: { _, tx, emit in
            try emitting(emit) { push in _ = try tx.query(filter, labels: labels) { id, row in try push(LabelledSample(id: id, labels: row)) } }
        }, consume: { sample in try body(sample.id, sample.labels); return true })
    }

    /// ``Transaction/agreement(of:where:)`` over every shard: the samples' labels merged in id
    /// order, so the figures are those of one store holding the same samples.
    public func agreement(
        of references: [LabelSetReference], where filter: QueryExpression? = nil, clearance: Clearance, in snapshot: CorpusSnapshot? = nil
    ) throws -> Agreement {
        let names = try read(0, clearance: clearance, in: snapshot) { try $0.distinctSources(references, needing: "compare at least two label sets") }
        return try Transaction.measureAgreement(names: names, classes: schema.classes.count) { body in
            try forEachLabelledSample(filter, labels: references, clearance: clearance, in: snapshot, body)
        }
    }

    /// ``Transaction/labelIssues(given:probs:filter:where:)`` over every shard: each of its
    /// passes reads the shards' rows merged in id order, from one snapshot, so the result is
    /// that of one store holding the same samples.
    public func labelIssues(
        given: LabelSetReference, probs: LabelSetReference, filter: LabelIssueFilter = .pruneByNoiseRate, where expression: QueryExpression? = nil,
        clearance: Clearance
    ) throws -> LabelIssues {
        // Three passes over one snapshot: the thresholds, the joint and the selection see the same rows.
        try withSnapshot(clearance: clearance) { snapshot in
            let tx = snapshot.transactions[0]
            let names = try tx.distinctSources([given, probs], needing: "")
            let sources = try [given, probs].map { try tx.labelSource($0, for: "label issues").entity }
            return try Transaction.findLabelIssues(names: names, sources: sources, classes: schema.classes.count, filter: filter, expression: expression) { body in
                try forEachLabelledSample(expression, labels: [given, probs], clearance: clearance, in: snapshot, body)
            }
        }
    }

    /// ``Transaction/labelDiff(_:_:)`` over every shard, in id order.
    public func labelDiff(_ a: LabelSetReference, _ b: LabelSetReference, clearance: Clearance) throws -> LabelDiff {
        try shards[0].read(clearance: clearance) { tx in
            for reference in [a, b] { try tx.requirePerSample(try tx.resolve(reference).set, for: "labels diff") }
        }
        return try LabelDiff(rows: { body in try forEachLabelledSample(nil, labels: [a, b], clearance: clearance, body) })
    }
}

extension CorpusWriter {
    /// Writes the suggested classes of `result`'s flagged samples (found on this corpus, e.g. by
    /// ``Corpus/labelIssues(given:probs:filter:where:clearance:)`` while this writer held it) as
    /// the next version of hard label set `name`, routed as any label import
    /// (``importLabels(_:ids:into:codec:views:agent:source:privileges:normalize:clearance:provenance:now:afterShardCommit:)``),
    /// as ``WriteTransaction/writeSuggestions(of:into:agent:)`` writes them in a store.
    @discardableResult
    public func writeSuggestions(of result: LabelIssues, into name: String, agent: String, clearance: Clearance) throws -> LabelSetVersion {
        let (ids, classes) = try result.suggestions(for: name)
        let parts = try importLabels(.hard(classes), ids: ids, into: name, agent: agent, source: result.suggestionSource, clearance: clearance,
                                     provenance: result.provenance(agent: agent))
        return LabelSetVersion.combined(parts)
    }
}

extension Corpus {
    /// ``Transaction/checkProjector(_:)`` over every shard: each shard regenerates and compares
    /// its own samples (with its own corrections), and the figures are summed in id order, so
    /// they are those of one store holding the same samples.
    public func checkProjector(_ reference: ProjectorReference, clearance: Clearance) throws -> ProjectorCheck {
        guard isSharded else { return try shards[0].read(clearance: clearance) { try $0.checkProjector(reference) } }
        var tally = ProjectorCheckTally(try shards[0].read(clearance: clearance) { try $0.load(reference).version })
        try merge(clearance: clearance, by: { $0.id < $1.id }, produce: { _, tx, emit in
            try emitting(emit) { push in try tx.forEachCheckedSample(try tx.load(reference), push) }
        }, consume: { tally.add($0); return true })
        return tally.result()
    }
}

/// How two label sets (or two versions of one) differ in top-1 class, over the samples the
/// clearance sees: a hard label's class, a soft label's most probable one.
public struct LabelDiff: Sendable, Equatable {
    /// A sample both label, with another top-1 class in each (−1: a label with no top-1 class).
    public struct Change: Sendable, Equatable {
        /// The sample.
        public var id: UInt64
        /// Its top-1 class in the first.
        public var from: Int
        /// Its top-1 class in the second.
        public var to: Int
    }
    /// The samples whose top-1 class differs, ascending by id.
    public var changed: [Change] = []
    /// Samples both label with the same top-1 class.
    public var unchanged = 0
    /// Samples only the first labels.
    public var onlyInFirst = 0
    /// Samples only the second labels.
    public var onlyInSecond = 0

    /// The diff of the rows `rows` streams, each with the first source's label and the second's.
    init(rows: LabelledRows) throws {
        func top(_ label: Label) -> Int { label.hard ?? label.top1?.classIndex ?? -1 }
        try rows { id, labels in
            switch (labels[0], labels[1]) {
            case (let a?, let b?):
                if top(a) == top(b) { unchanged += 1 } else { changed.append(Change(id: id, from: top(a), to: top(b))) }
            case (.some, nil): onlyInFirst += 1
            case (nil, .some): onlyInSecond += 1
            case (nil, nil): break
            }
        }
    }
}

extension Transaction {
    /// How label sets `a` and `b` (SET@VERSION each; per sample, not per view) differ in top-1
    /// class over the samples the clearance sees.
    ///
    /// - Throws: ``LabelError`` for an unknown or per-view set or version.
    public func labelDiff(_ a: LabelSetReference, _ b: LabelSetReference) throws -> LabelDiff {
        for reference in [a, b] { try requirePerSample(try resolve(reference).set, for: "labels diff") }
        return try LabelDiff(rows: { body in _ = try query(nil, labels: [a, b], body) })
    }
}

/// A sample's consensus row, as a corpus's merge passes it on (``ConsensusRows``).
private struct ConsensusSample: Sendable {
    var id: UInt64
    var labels: [Label?]
    var isReference: Bool
}

extension CorpusWriter {
    /// ``WriteTransaction/consensus(into:from:method:weights:reference:codec:agent:tolerance:maxIterations:)``
    /// on a corpus: the sources' rows of every shard, read through `corpus` (opened while this
    /// writer holds the lock, so nothing changes under it) and merged in id order, give the
    /// labels one store holding the same samples would; they are written as a routed label
    /// import (``importLabels(_:ids:into:codec:views:agent:source:privileges:normalize:clearance:provenance:now:afterShardCommit:)``).
    public func consensus(
        reading corpus: Corpus, into name: String, from references: [LabelSetReference], method: ConsensusMethod, weights: [Double]? = nil,
        reference: ConsensusReference? = nil, codec: SoftLabelCodec? = nil, agent: String, tolerance: Double = 1e-6, maxIterations: Int = 500,
        clearance: Clearance
    ) throws -> ConsensusReport {
        let request = try corpus.read(0, clearance: clearance, in: nil) { tx in
            try tx.consensusRequest(references, method: method, weights: weights, reference: reference, tolerance: tolerance, maxIterations: maxIterations)
        }
        let rows: ConsensusRows = { body in
            try corpus.merge(clearance: clearance, by: { $0.id < $1.id }, produce: { _, tx, emit in
                try emitting(emit) { push in
                    try tx.consensusRows(references, reference: reference)({ id, labels, isReference in
                        try push(ConsensusSample(id: id, labels: labels, isReference: isReference))
                    })
                }
            }, consume: { sample in try body(sample.id, sample.labels, sample.isReference); return true })
        }
        let labels = try request.compute(agent: agent, rows: rows)
        let parts = try importLabels(.soft(labels.soft), ids: labels.ids, into: name, codec: codec, agent: agent, source: labels.source,
                                     normalize: true, clearance: clearance, provenance: labels.record)
        return labels.report(LabelSetVersion.combined(parts))
    }
}
