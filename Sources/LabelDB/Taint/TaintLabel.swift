import Foundation

/// An information-flow label: the lattice operations every label type provides, so a richer
/// lattice (e.g. DC labels) can replace ``TaintLabel`` later.
public protocol FlowLabel: Hashable, Sendable {
    /// The least restrictive label: public and fully trusted.
    static var bottom: Self { get }
    /// The least upper bound (⊔): what a value derived from both carries.
    func join(_ other: Self) -> Self
    /// The greatest lower bound (⊓).
    func meet(_ other: Self) -> Self
    /// True when data with this label may flow to a holder of `other` (self ⊑ other).
    func flows(to other: Self) -> Bool
}

/// A set of tags that may also be "every tag" (the top of the subset order), needed because the
/// bottom label trusts everything: its integrity part is the set of all tags.
public enum TagSet: Hashable, Sendable, CustomStringConvertible {
    /// Every tag.
    case all
    /// Exactly these tags.
    case tags(Set<String>)

    /// The empty set.
    public static let none = TagSet.tags([])

    /// Set union.
    public func union(_ other: TagSet) -> TagSet {
        switch (self, other) {
        case (.all, _), (_, .all): .all
        case (.tags(let a), .tags(let b)): .tags(a.union(b))
        }
    }

    /// Set intersection.
    public func intersection(_ other: TagSet) -> TagSet {
        switch (self, other) {
        case (.all, let x), (let x, .all): x
        case (.tags(let a), .tags(let b)): .tags(a.intersection(b))
        }
    }

    /// ⊆.
    public func isSubset(of other: TagSet) -> Bool {
        switch (self, other) {
        case (_, .all): true
        case (.all, .tags): false
        case (.tags(let a), .tags(let b)): a.isSubset(of: b)
        }
    }

    /// The tags, sorted; `["*"]` for every tag.
    public var sorted: [String] {
        switch self {
        case .all: ["*"]
        case .tags(let t): t.sorted()
        }
    }

    public var description: String { sorted.joined(separator: ",") }
}

/// A taint label: a **secrecy** part (whose data this is — a reader must be cleared for every tag)
/// and an **integrity** part (tags vouching for the data). The Flume/FIDES product lattice:
/// L1 ⊑ L2 iff secrecy1 ⊆ secrecy2 and integrity1 ⊇ integrity2; join unions secrecy and
/// intersects integrity; meet is the dual; ⊥ = (∅, all tags).
///
/// For example:
///
/// ```swift
/// let licensed = TaintLabel(secrecy: ["licensed:getty"], integrity: ["human-reviewed"])
/// let web = TaintLabel(secrecy: [], integrity: [])
/// let derived = licensed.join(web)   // secrecy {licensed:getty}, integrity {}
/// ```
public struct TaintLabel: FlowLabel, CustomStringConvertible {
    /// Whose data this is.
    public var secrecy: TagSet
    /// What vouches for it.
    public var integrity: TagSet

    /// A label with the given tags.
    public init(secrecy: Set<String>, integrity: Set<String>) {
        self.secrecy = .tags(secrecy)
        self.integrity = .tags(integrity)
    }

    /// A label from tag sets (either may be `.all`).
    public init(secrecy: TagSet, integrity: TagSet) {
        self.secrecy = secrecy
        self.integrity = integrity
    }

    /// Public and fully trusted: flows anywhere.
    public static let bottom = TaintLabel(secrecy: .none, integrity: .all)

    public func join(_ other: TaintLabel) -> TaintLabel {
        TaintLabel(secrecy: secrecy.union(other.secrecy), integrity: integrity.intersection(other.integrity))
    }

    public func meet(_ other: TaintLabel) -> TaintLabel {
        TaintLabel(secrecy: secrecy.intersection(other.secrecy), integrity: integrity.union(other.integrity))
    }

    public func flows(to other: TaintLabel) -> Bool {
        secrecy.isSubset(of: other.secrecy) && other.integrity.isSubset(of: integrity)
    }

    /// `{"secrecy": [...], "integrity": [...]}` order, as text.
    public var description: String { "secrecy={\(secrecy)} integrity={\(integrity)}" }
}

/// What a reader may see: data whose label flows to the clearance's label, i.e. whose secrecy
/// tags are all allowed and whose integrity includes every required tag.
public struct Clearance: Hashable, Sendable, CustomStringConvertible {
    /// The secrecy tags the reader is cleared for (`.all` for everything).
    public var allowedSecrecy: TagSet
    /// The integrity tags the reader requires of what it reads.
    public var requiredIntegrity: Set<String>

    /// A clearance.
    public init(allowedSecrecy: TagSet, requiredIntegrity: Set<String> = []) {
        self.allowedSecrecy = allowedSecrecy
        self.requiredIntegrity = requiredIntegrity
    }

    /// No secrecy tags, no integrity required: sees public data only.
    public static let `public` = Clearance(allowedSecrecy: .none)
    /// Sees everything (administration, tests).
    public static let all = Clearance(allowedSecrecy: .all)

    /// The label a reader with this clearance holds.
    public var label: TaintLabel { TaintLabel(secrecy: allowedSecrecy, integrity: .tags(requiredIntegrity)) }

    /// True when data labelled `label` is visible under this clearance.
    public func admits(_ label: TaintLabel) -> Bool { label.flows(to: self.label) }

    /// Parses `all`, `public` (or the empty string), or `secrecy=a,b;integrity=c`: each part at most once, either may be
    /// omitted or have an empty list (`secrecy=`). Empty parts (`;;`), empty tags (`pii,`) and a
    /// repeated part are errors: a clearance is a security setting, so nothing in it is guessed.
    ///
    /// - Throws: ``TaintError/malformedClearance(_:)`` or ``TaintError/invalidTag(tag:in:)``.
    public init(parsing text: String) throws {
        if text == "all" { self = .all; return }
        if text == "public" || text.isEmpty { self = .public; return }
        var parts: [String: Set<String>] = [:]
        for part in text.split(separator: ";", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pieces.count == 2 else { throw TaintError.malformedClearance(text) }
            let name = pieces[0].trimmingCharacters(in: .whitespaces)
            guard name == "secrecy" || name == "integrity", parts[name] == nil else { throw TaintError.malformedClearance(text) }
            let list = String(pieces[1])
            parts[name] = list.isEmpty ? [] : try TaintTags.parse(lists: [list])
        }
        self.init(allowedSecrecy: .tags(parts["secrecy"] ?? []), requiredIntegrity: parts["integrity"] ?? [])
    }

    public var description: String { "secrecy=\(allowedSecrecy);integrity=\(requiredIntegrity.sorted().joined(separator: ","))" }
}

/// Errors of the taint layer.
public enum TaintError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A clearance string that does not parse.
    case malformedClearance(String)
    /// A tag that is empty or has characters tags may not contain.
    case invalidTag(tag: String, in: String)
    /// A clearance (or a relabel that removes tags) names a tag the store has never registered.
    case unknownTag(String)
    /// A taint label given as JSON or stored that is not of the expected shape.
    case malformedLabel(String)
    /// The operation needs a clearance that sees more than the one given.
    case clearanceTooNarrow(String)
    /// A relabel removes a secrecy tag (declassify) or adds an integrity tag (endorse) without the privilege for it.
    case missingPrivilege(tag: String, action: String)

    public var description: String {
        switch self {
        case .malformedClearance(let text): "'\(text)' is not a clearance (expected 'all', 'public' or 'secrecy=a,b;integrity=c')"
        case .invalidTag(let tag, let text): "'\(tag)' in '\(text)' is not a valid tag (letters, digits and . _ : - / @ only)"
        case .unknownTag(let tag): "unknown tag '\(tag)': the store has no such tag (see `labeldb info`)"
        case .malformedLabel(let reason): "malformed taint label: \(reason)"
        case .clearanceTooNarrow(let reason): reason
        case .missingPrivilege(let tag, let action): "cannot \(action) '\(tag)' without the privilege for '\(tag)'"
        }
    }
}

/// Tag names and comma-separated lists of them, as the CLI and clearances spell them.
public enum TaintTags {
    /// The tags of comma-separated lists (each list as one `--secrecy a,b` option gives it; the
    /// option may repeat). An empty list item (`a,,b`, a trailing comma) is an error, not skipped:
    /// a typo must not quietly drop a tag.
    ///
    /// - Throws: ``TaintError/invalidTag(tag:in:)`` naming the list.
    public static func parse(lists: [String]) throws -> Set<String> {
        var tags = Set<String>()
        for list in lists {
            for item in list.split(separator: ",", omittingEmptySubsequences: false) {
                tags.insert(try validated(String(item), in: list))
            }
        }
        return tags
    }

    /// Tags are short names: letters, digits and `. _ : - / @` (so they can sit in lists and keys).
    static func validated(_ tag: String, in text: String) throws -> String {
        let trimmed = tag.trimmingCharacters(in: .whitespaces)
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-/@")
        guard !trimmed.isEmpty, trimmed.count <= 128, trimmed.allSatisfy({ allowed.contains($0) }) else {
            throw TaintError.invalidTag(tag: tag, in: text)
        }
        return trimmed
    }
}
