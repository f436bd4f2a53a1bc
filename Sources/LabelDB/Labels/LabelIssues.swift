import Foundation

/// Which confident-learning filter flags a sample (cleanlab 2.9's `filter_by`; issue 13).
public enum LabelIssueFilter: String, Sendable, CaseIterable {
    /// Per given class k and estimated true class j, the off-diagonal count of the calibrated
    /// confident joint picks that many samples given k with the largest margin p(j) − p(k).
    case pruneByNoiseRate = "prune-by-noise-rate"
    /// Per given class k, all but the joint's diagonal count, lowest p(k) first.
    case pruneByClass = "prune-by-class"
    /// Flagged by both.
    case both
}

/// A sample whose given label is probably wrong.
public struct LabelIssue: Sendable, Equatable {
    /// 1 for the least self-confident.
    public var rank: Int
    /// The sample.
    public var id: UInt64
    /// The given class (the hard label).
    public var given: Int
    /// The class the probabilities favour (their argmax, the first of equals).
    public var suggested: Int
    /// p(given): the ranking score, lowest first.
    public var selfConfidence: Double
    /// p(given) − the largest other p.
    public var margin: Double
}

/// What `labels issues` found.
public struct LabelIssues: Sendable {
    /// The given labels, as `NAME@VERSION`.
    public var given: String
    /// The probabilities (a soft label set or a projector), as `NAME@VERSION`.
    public var probs: String
    /// Samples the clearance sees (and the filter selects) that both label.
    public var examined: Int
    /// Per class, the mean self-confidence of the samples given that class; nil for a class
    /// no sample is given (cleanlab then uses 2, which no probability reaches).
    public var thresholds: [Double?]
    /// The calibrated confident joint, given class × estimated true class, summing to
    /// ``examined``; its off-diagonal sum is the estimated number of label errors.
    public var confidentJoint: [[Int]]
    /// The flagged samples, least self-confident first (ties by id).
    public var issues: [LabelIssue]

    /// The joint's off-diagonal sum: how many given labels confident learning estimates wrong.
    public var estimatedErrors: Int {
        confidentJoint.enumerated().reduce(0) { sum, row in sum + row.element.reduce(0, +) - row.element[row.offset] }
    }

    /// The secrecy of every row read: whether one sample is flagged depends on all of them
    /// (the thresholds and the joint), so a label written from the result carries it all.
    var secrecy = TagSet.tags([])
    /// What a written set's provenance names: the two sources as resolved, the filter, and
    /// the `--where` text.
    var sources: [ProvenanceEntity] = []
    var filter: LabelIssueFilter = .pruneByNoiseRate
    var expression: QueryExpression?
}

extension Transaction {
    /// Finds likely label errors by confident learning, as cleanlab 2.9.0's
    /// `find_label_issues(labels, pred_probs, filter_by=…)` with its defaults (`frac_noise` 1,
    /// `min_examples_per_class` 1): per-class thresholds are the mean self-confidence, the
    /// confident joint is calibrated to the given-label counts, the filter picks samples, and
    /// samples whose given class is the argmax (within 1e-6) are dropped. `given` must be a hard
    /// label set, `probs` a soft set or a projector (regenerated). Only samples the clearance sees,
    /// matching `filter`, that both label take part. Where cleanlab's `argsort` would order equal
    /// scores arbitrarily, the smaller id comes first.
    ///
    /// Three passes over the rows (thresholds, joint, selection), in memory of O(C²) for the
    /// joint, 8 bytes a sample (the self-confidences, summed in numpy's order) and the flagged
    /// samples. Given labels of fewer than two classes are refused, as cleanlab refuses them
    /// (except all-0 labels, which it lets through for its multi-label code).
    ///
    /// - Throws: ``LabelIssuesError``, ``AgreementError`` (a source named twice), ``LabelError``,
    ///   ``QueryError``.
    public func labelIssues(
        given: LabelSetReference, probs: LabelSetReference, filter: LabelIssueFilter = .pruneByNoiseRate, where expression: QueryExpression? = nil
    ) throws -> LabelIssues {
        let names = try distinctSources([given, probs], needing: "")
        let sources = try [given, probs].map { try labelSource($0, for: "label issues").entity }
        return try Self.findLabelIssues(names: names, sources: sources, classes: store.schema.classes.count, filter: filter, expression: expression) { body in
            _ = try query(expression, labels: [given, probs], body)
        }
    }

    /// Confident learning over the samples `rows` streams (id order; read three times), with
    /// the given labels first and the probabilities second: the passes of
    /// ``labelIssues(given:probs:filter:where:)`` for one store's query or a corpus's shards merged.
    static func findLabelIssues(
        names: [String], sources: [ProvenanceEntity], classes c: Int, filter: LabelIssueFilter, expression: QueryExpression?, rows all: LabelledRows
    ) throws -> LabelIssues {
        guard c <= Self.maximumConfusionClasses else {
            throw LabelIssuesError.inputs("confident learning keeps a \(c) × \(c) joint; at most \(Self.maximumConfusionClasses) classes are supported")
        }
        // The samples both sources label, checked to be a hard label and a soft one.
        func rows(_ body: (UInt64, Label, Label) throws -> Void) throws {
            // Each pass's body runs only while `all` does.
            try withoutActuallyEscaping(body) { body in
                try all { id, labels in
                    guard let g = labels[0], let p = labels[1] else { return }
                    guard g.hard != nil else { throw LabelIssuesError.inputs("--given \(names[0]) is not a hard label set: confident learning needs one given class per sample") }
                    guard p.soft != nil else { throw LabelIssuesError.inputs("--probs \(names[1]) is not a soft label set or projector: confident learning needs predicted probabilities") }
                    try body(id, g, p)
                }
            }
        }
        var counter = ConfidentLearning(classes: c)
        var secrecy = TagSet.tags([])
        try rows { _, g, p in
            secrecy = secrecy.union(g.taint.secrecy).union(p.taint.secrecy)
            counter.countSelfConfidence(given: g.hard!, probs: p.soft!)
        }
        guard counter.examined > 0 else { throw LabelIssuesError.noCommonSample(names[0], names[1]) }
        guard counter.labelCounts.filter({ $0 > 0 }).count >= 2 else {
            throw LabelIssuesError.inputs("the given labels of \(names[0]) name one class only: confident learning needs at least two (cleanlab refuses one too)")
        }
        let thresholds = counter.thresholds()
        try rows { _, g, p in counter.countJoint(given: g.hard!, probs: p.soft!, thresholds: thresholds) }
        let joint = counter.calibratedJoint()
        var selector = IssueSelector(prune: ConfidentLearning.keepAtLeastOne(joint, classes: c), counts: counter.labelCounts, filter: filter)
        try rows { id, g, p in selector.visit(id: id, given: g.hard!, probs: p.soft!) }
        return LabelIssues(given: names[0], probs: names[1], examined: counter.examined,
                           thresholds: thresholds.map { $0 == ConfidentLearning.unreachable ? nil : $0 },
                           confidentJoint: (0..<c).map { Array(joint[($0 * c)..<($0 * c + c)]) }, issues: selector.ranked(),
                           secrecy: secrecy, sources: sources, filter: filter, expression: expression)
    }
}

extension WriteTransaction {
    /// Writes the suggested class of every flagged sample as a new version of hard label set
    /// `name`, for review. Its source label carries the secrecy of every row the search read;
    /// its provenance (`label issues`) names both sources, the filter and the `where` filter.
    ///
    /// A `where` filter that reads labels is refused: which samples it keeps depends on those
    /// labels, for samples it drops too, so no row's secrecy could stand for it.
    ///
    /// - Throws: ``LabelIssuesError`` when nothing was flagged or the filter reads labels;
    ///   ``LabelError``.
    public func writeSuggestions(of result: LabelIssues, into name: String, agent: String) throws -> LabelSetVersion {
        let (ids, classes) = try result.suggestions(for: name)
        let info = try importLabels(.hard(classes), ids: ids, into: name, agent: agent, source: result.suggestionSource)
        var record = result.provenance(agent: agent)
        record.generated = [ProvenanceEntity(kind: "label_set", name: name, version: info.version, rows: info.rows)]
        describe(record)
        return info
    }
}

extension LabelIssues {
    /// The flagged samples (ascending id) and their suggested classes, as a set written from
    /// this result holds them.
    ///
    /// - Throws: ``LabelIssuesError/inputs(_:)`` for a `--where` that reads labels, or no flagged sample.
    func suggestions(for name: String) throws -> (ids: [UInt64], classes: [Int]) {
        if let read = expression?.labelReferences.first {
            throw LabelIssuesError.inputs("a set written from label issues cannot use a --where that reads labels (\(read.name)): the written labels would depend on rows whose taint they do not carry; filter on id, meta, tagged or flows_to")
        }
        guard !issues.isEmpty else { throw LabelIssuesError.inputs("no sample was flagged: label set \(name) not written") }
        let ordered = issues.sorted { $0.id < $1.id }
        return (ordered.map(\.id), ordered.map(\.suggested))
    }

    /// The source label of a set written from this result: the secrecy of every row read, no integrity.
    var suggestionSource: TaintLabel { TaintLabel(secrecy: secrecy, integrity: .tags([])) }

    /// The provenance record of writing the suggestions (its `generated` filled in by the writer).
    func provenance(agent: String) -> ProvenanceRecord {
        ProvenanceRecord(activity: "label issues", agent: agent, used: sources,
                         parameters: ["filter": filter.rawValue].merging(expression.map { ["where": $0.description] } ?? [:]) { a, _ in a })
    }
}

/// Errors of `labels issues`.
public enum LabelIssuesError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The sources are of the wrong kind, or too large.
    case inputs(String)
    /// The two sources label no common sample the clearance sees.
    case noCommonSample(String, String)

    public var description: String {
        switch self {
        case .inputs(let why): why
        case .noCommonSample(let a, let b): "\(a) and \(b) label no common sample under this clearance (and filter)"
        }
    }
}
