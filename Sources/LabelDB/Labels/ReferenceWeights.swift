import Foundation

/// The reviewed samples a consensus learns from how far to trust each source, class by class
/// (the Label Critic idea: per sample, prefer the source that is usually right when it says
/// what it says here).
public enum ConsensusReference: Sendable, Equatable {
    /// A trusted label set: every sample it labels is a reference sample.
    case set(LabelSetReference)
    /// The samples whose taint label carries integrity tag `tag` (vouched for by its holder),
    /// with their labels from `set`.
    case tagged(String, set: LabelSetReference)

    /// The reference named by `labels consensus --reference SET` or `--reference-tag TAG
    /// --reference-set SET` (nil when neither is given).
    ///
    /// - Throws: ``ConsensusError/options(_:)`` for a combination that names no one reference.
    public init?(set: String?, tag: String?, tagSet: String?) throws {
        switch (set, tag, tagSet) {
        case (nil, nil, nil): return nil
        case (let set?, nil, nil): self = .set(try LabelSetReference(parsing: set))
        case (nil, let tag?, let tagSet?): self = .tagged(tag, set: try LabelSetReference(parsing: tagSet))
        case (nil, _?, nil): throw ConsensusError.options("a reference tag needs the label set its samples' labels come from (--reference-set)")
        case (nil, nil, _?): throw ConsensusError.options("a reference set (--reference-set) goes with a reference tag (--reference-tag); for every sample a set labels use --reference")
        default: throw ConsensusError.options("give a reference set (--reference) or a reference tag with its label set (--reference-tag, --reference-set), not both")
        }
    }

    /// The label set the reference labels come from.
    public var labels: LabelSetReference {
        switch self {
        case .set(let set), .tagged(_, let set): set
        }
    }
}

/// Each source's per-class accuracy on the reference: of the reference samples a source gives
/// class c (its top-1), the share the reference also gives c.
public struct ReferenceAccuracy: Sendable, Equatable {
    /// The reference, as `NAME@V` or `NAME@V tagged T`.
    public var reference: String
    /// Reference samples (with a top-1 class) that at least one source labels.
    public var samples: Int
    /// `[source][class]`: the reference samples the source gives that class, and how many of
    /// them the reference gives it too.
    public var counts: [[Int]], hits: [[Int]]

    /// hits ÷ counts, or nil when the source gave the class to no reference sample.
    public func accuracy(source: Int, classIndex: Int) -> Double? {
        counts[source][classIndex] == 0 ? nil : Double(hits[source][classIndex]) / Double(counts[source][classIndex])
    }

    /// The weight of a source's label of class c: its accuracy, smoothed toward ½ by one hit
    /// and one miss (Laplace), so a class never seen on the reference still counts a little.
    func weight(source: Int, classIndex: Int) -> Double {
        (Double(hits[source][classIndex]) + 1) / (Double(counts[source][classIndex]) + 2)
    }

    /// Per source, its weight on this sample (the weight of the class it gives it; 0 where it
    /// gives none).
    func weights(of row: [Label?]) -> [Double] {
        row.enumerated().map { s, label in label?.top1.map { weight(source: s, classIndex: $0.classIndex) } ?? 0 }
    }

    init(reference: String, sources: Int, classes: Int) {
        self.reference = reference
        samples = 0
        counts = [[Int]](repeating: [Int](repeating: 0, count: classes), count: sources)
        hits = counts
    }

    /// Counts a reference sample whose reference class is `truth`.
    mutating func count(_ row: [Label?], truth: Int) {
        samples += 1
        for (s, label) in row.enumerated() {
            guard let given = label?.top1?.classIndex else { continue }
            counts[s][given] += 1
            if given == truth { hits[s][given] += 1 }
        }
    }
}

extension Transaction {
    /// Whether sample `id`, labelled `label` by the reference set, is a reference sample.
    func isReferenceSample(_ id: UInt64, _ label: Label?, _ reference: ConsensusReference) throws -> Bool {
        guard label?.top1 != nil else { return false }
        guard case .tagged(let tag, _) = reference else { return true }
        guard let taint = try taintLabel(of: id) else { return false }
        return TagSet.tags([tag]).isSubset(of: taint.integrity)
    }

    /// `NAME@V`, or `NAME@V tagged T`, of a reference; an unknown tag is an error.
    func referenceName(_ reference: ConsensusReference) throws -> String {
        let name = try sourceName(reference.labels)
        guard case .tagged(let tag, _) = reference else { return name }
        guard try registeredTags().contains(tag) else { throw ConsensusError.options("unknown tag '\(tag)' in the reference: the store has no such tag") }
        return "\(name) tagged \(tag)"
    }
}
