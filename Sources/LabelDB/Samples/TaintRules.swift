import Foundation

/// A rule an import applies to its rows before they are written: every row that matches
/// `filter` gets `tags` added to its taint label, in the same transaction as the write, so no
/// row is ever stored without them (`labeldb import --secrecy-where EXPR TAGS`).
///
/// The filter is the `labeldb query` grammar over what a new row has: `id`, `meta.FIELD`,
/// `tagged('T')` and `flows_to('…')` (against the row's label before any rule adds to it, so
/// rules do not depend on their order). Label forms are refused: a new row has no labels yet.
public struct TaintRule: Sendable, Equatable, CustomStringConvertible {
    /// Which half of the taint label the tags join.
    public enum Kind: String, Sendable {
        /// Whose data the row is: adding restricts who may read it.
        case secrecy
        /// What vouches for the row: adding endorses it, so the write needs the privilege.
        case integrity
    }

    /// The rows the rule applies to.
    public let filter: QueryExpression
    /// Secrecy or integrity.
    public let kind: Kind
    /// The tags added to each matching row.
    public let tags: Set<String>

    /// A rule from a parsed filter and a comma list of tags.
    /// - Throws: ``QueryError/unsupported(_:)`` for a filter that reads labels; ``TaintError`` for a bad tag.
    public init(filter: QueryExpression, kind: Kind, tags: String) throws {
        if let reference = filter.labelReferences.first {
            throw QueryError.unsupported("label(\(reference)) cannot select rows being imported (they have no labels yet)")
        }
        let parsed = try TaintTags.parse(lists: [tags])
        guard !parsed.isEmpty else { throw TaintError.malformedLabel("a \(kind.rawValue) rule needs at least one tag") }
        self.filter = filter
        self.kind = kind
        self.tags = parsed
    }

    public var description: String { "\(filter) → \(kind.rawValue) \(tags.sorted().joined(separator: ","))" }

    /// Whether the rule applies to a row with this id, metadata and taint label.
    func matches(id: UInt64, metadata: [String: JSONValue], taint: TaintLabel) throws -> Bool {
        try filter.matchesNewRow(id: id, metadata: metadata, taint: taint)
    }
}

extension SampleBatch {
    /// Adds each rule's tags to the taint label of every row it matches (ids must be assigned).
    /// Every rule sees the rows' labels as they were before any rule ran.
    /// - Returns: per rule, the number of rows it matched.
    /// - Throws: ``StoreError/invalidSample(id:reason:)`` when the ids are not assigned (fewer than the rows).
    public mutating func apply(_ rules: [TaintRule]) throws -> [Int] {
        guard !rules.isEmpty else { return [] }
        for (what, rows) in [("metadata objects", metadata?.count), ("taint labels", taints?.count)] {
            if let rows, rows != ids.count {
                throw StoreError.invalidSample(id: nil, reason: "taint rules need one id per row: \(ids.count) ids for \(rows) \(what)")
            }
        }
        let before = taints ?? Array(repeating: .public, count: count)
        var after = before
        var matched = [Int](repeating: 0, count: rules.count)
        for row in 0..<count {
            let rowMetadata = metadata?[row] ?? [:]
            for (r, rule) in rules.enumerated() where try rule.matches(id: ids[row], metadata: rowMetadata, taint: before[row]) {
                matched[r] += 1
                switch rule.kind {
                case .secrecy: after[row].secrecy = after[row].secrecy.union(.tags(rule.tags))
                case .integrity: after[row].integrity = after[row].integrity.union(.tags(rule.tags))
                }
            }
        }
        if after.contains(where: { $0 != .public }) { taints = after }
        return matched
    }
}

extension QueryValue {
    /// The label set a `label(B).top1` value reads.
    var labelReferences: [LabelSetReference] { if case .labelTop1(let r) = self { [r] } else { [] } }
}

extension QueryExpression {
    /// The label sets and projectors the expression reads.
    var labelReferences: [LabelSetReference] {
        switch self {
        case .and(let parts), .or(let parts): parts.flatMap(\.labelReferences)
        case .not(let a): a.labelReferences
        case .tagged, .flowsTo: []
        case .has(let reference, let value): [reference] + value.labelReferences
        case .sourceTagged(let reference, _): [reference]
        case .comparison(let operand, _, let value):
            switch operand {
            case .id, .meta: value.labelReferences
            case .probability(let r, let c): [r] + c.labelReferences + value.labelReferences
            case .top1(let r), .confidence(let r), .labelVersion(let r), .agent(let r), .viewCount(let r): [r] + value.labelReferences
            case .anyView(let r, .probability(let c)): [r] + c.labelReferences + value.labelReferences
            case .anyView(let r, _): [r] + value.labelReferences
            }
        }
    }

    /// Evaluates a filter without label forms over a row that is not stored yet (callers check
    /// ``labelReferences`` is empty first).
    func matchesNewRow(id: UInt64, metadata: [String: JSONValue], taint: TaintLabel) throws -> Bool {
        switch self {
        case .and(let parts): return try parts.allSatisfy { try $0.matchesNewRow(id: id, metadata: metadata, taint: taint) }
        case .or(let parts): return try parts.contains { try $0.matchesNewRow(id: id, metadata: metadata, taint: taint) }
        case .not(let a): return try !a.matchesNewRow(id: id, metadata: metadata, taint: taint)
        case .tagged(let tag): return taint.namedTags.contains(tag)
        case .flowsTo(let text): return try Clearance(parsing: text).admits(taint)
        case .comparison(.id, let op, .integer(let v)): return op.holds(id, v)
        case .comparison(.id, _, _): return false
        case .comparison(.meta(let field), let op, let value): return op.holds(metadata[field], value)
        case .has, .sourceTagged, .comparison: throw QueryError.unsupported("\(self) reads labels")
        }
    }
}
