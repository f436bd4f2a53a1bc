import Foundation

/// How query results are ordered.
public enum QueryOrder: Equatable, Sendable {
    /// Ascending id (the default), or descending.
    case id
    /// By the top-1 confidence in a label set; samples without a label there come last.
    case confidence(LabelSetReference)
    /// By the margin in a label set: top-1 minus top-2 probability (1 for a hard label), the
    /// usual measure of how close a label is to flipping; samples without a label come last.
    case margin(LabelSetReference)
    /// By the entropy of a label set's distribution, in nats (0 for a hard label); samples
    /// without a label come last.
    case entropy(LabelSetReference)

    /// Top-1 minus top-2 of a distribution.
    static func margin(_ p: [Float]) -> Float {
        var first: Float = 0, second: Float = 0
        for v in p {
            if v > first { (first, second) = (v, first) } else if v > second { second = v }
        }
        return first - second
    }

    /// The label source a score order reads, or nil for id order.
    var scoredSource: LabelSetReference? {
        switch self {
        case .id: nil
        case .confidence(let r), .margin(let r), .entropy(let r): r
        }
    }

    /// The score a label gets under this order.
    func score(_ label: Label, classCount: Int) -> Float {
        switch self {
        case .id: 0
        case .confidence: label.hard != nil ? 1 : label.top1?.confidence ?? 0
        case .margin: label.hard != nil ? 1 : Self.margin(label.distribution(classCount: classCount))
        case .entropy:
            label.hard != nil ? 0 : -label.distribution(classCount: classCount).reduce(Float(0)) { $0 + ($1 > 0 ? $1 * log($1) : 0) }
        }
    }
}

/// Where a query's row ranks: its id and, under a score order, its score (nil for id order and
/// for samples the scored source does not label, which come last).
public struct QueryRank: Equatable, Sendable {
    /// The sample id.
    public var id: UInt64
    /// The score of the order's label source.
    public var score: Float?

    /// A rank.
    public init(id: UInt64, score: Float?) {
        self.id = id
        self.score = score
    }

    /// True when this row comes before `other` in `order` (`descending` or not): the order a
    /// query streams its rows in, ties by ascending id.
    public func precedes(_ other: QueryRank, order: QueryOrder, descending: Bool) -> Bool {
        guard order.scoredSource != nil else { return descending ? id > other.id : id < other.id }
        return QueryContext.before((id, score), (other.id, other.score), descending: descending)
    }
}

/// How a query was (or will be) answered: from the class index, or by a scan.
public struct QueryPlan: Equatable, Sendable, CustomStringConvertible {
    /// The class index used, if any: label set and class.
    public var index: (set: String, version: Int, classIndex: Int)?
    /// The taint partition used, if any: a top-level `tagged('T')` reads only the samples whose
    /// label names T.
    public var partition: String?
    /// Rows the plan examined.
    public var examined = 0
    /// Rows that matched (before offset and limit).
    public var matched = 0

    /// An empty plan (a full scan that has examined nothing yet).
    public init() {}

    public static func == (a: QueryPlan, b: QueryPlan) -> Bool {
        a.examined == b.examined && a.matched == b.matched && a.index?.set == b.index?.set && a.index?.classIndex == b.index?.classIndex
            && a.partition == b.partition
    }

    public var description: String {
        var sources: [String] = []
        if let index { sources.append("index: \(index.set)@\(index.version) top1 = class \(index.classIndex)") }
        if let partition { sources.append("taint partition: samples tagged '\(partition)'") }
        if sources.isEmpty { return "scan: every visible sample in id order; examined \(examined), \(matched) matched" }
        return sources.joined(separator: " ∩ ") + "; examined \(examined) candidates, \(matched) matched"
    }
}

/// Errors of evaluating a query (as opposed to parsing it).
public enum QueryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A class name that is not in the schema.
    case unknownClass(String)
    /// A construct that needs something not available yet.
    case unsupported(String)
    /// `tagged('T')` names a tag the store has never registered.
    case unknownTag(String)

    public var description: String {
        switch self {
        case .unknownClass(let name): "unknown class '\(name)'"
        case .unsupported(let what): what
        case .unknownTag(let tag): "unknown tag '\(tag)' in tagged(…): the store has no such tag"
        }
    }
}

extension Transaction {
    /// Runs a filter over the samples and calls `body` with each matching id, in the requested
    /// order, after `offset`, at most `limit` times.
    ///
    /// A top-level `label(SET).top1 = C` condition is answered from the class index (only that
    /// class's samples are examined); otherwise every sample is scanned in id order. Ordering by
    /// confidence keeps a bounded heap of `offset + limit` rows when a limit is given.
    ///
    /// - Throws: ``QueryError``, ``LabelError`` for unknown label sets or versions.
    @discardableResult
    public func query(
        _ filter: QueryExpression?, order: QueryOrder = .id, descending: Bool = false,
        limit: Int = .max, offset: Int = 0, _ body: (UInt64) throws -> Void
    ) throws -> QueryPlan {
        try query(filter, order: order, descending: descending, limit: limit, offset: offset, labels: []) { id, _ in try body(id) }
    }

    /// Runs a filter like ``query(_:order:descending:limit:offset:_:)``, and passes each matching
    /// id with its labels from `labels` (label sets, or projectors regenerating on read; nil
    /// where a sample has none or the clearance does not admit it), in the order of `labels`.
    ///
    /// Labels named in the filter or in `labels` that come from a projector are regenerated in
    /// batches of ``QueryContext/batchSize`` samples (one matrix product per batch). Rows stream:
    /// in id order memory stays constant whatever the result size; ordered by confidence it is
    /// proportional to `offset + limit`.
    @discardableResult
    public func query(
        _ filter: QueryExpression?, order: QueryOrder = .id, descending: Bool = false,
        limit: Int = .max, offset: Int = 0, labels wanted: [LabelSetReference], _ body: (UInt64, [Label?]) throws -> Void
    ) throws -> QueryPlan {
        try queryRanked(filter, order: order, descending: descending, limit: limit, offset: offset, labels: wanted) { rank, labels in try body(rank.id, labels) }
    }

    /// Runs a filter like ``query(_:order:descending:limit:offset:labels:_:)``, passing each row's
    /// ``QueryRank`` (its id and, under a score order, its score): what merging the rows of
    /// several shards into the order of one store needs.
    @discardableResult
    public func queryRanked(
        _ filter: QueryExpression?, order: QueryOrder = .id, descending: Bool = false,
        limit: Int = .max, offset: Int = 0, labels wanted: [LabelSetReference], _ body: (QueryRank, [Label?]) throws -> Void
    ) throws -> QueryPlan {
        let context = try QueryContext(tx: self, filter: filter, order: order, labels: wanted)
        var plan = QueryPlan()
        var skipped = 0, emitted = 0
        func deliver(_ id: UInt64, score: Float? = nil) throws -> Bool {
            if skipped < offset { skipped += 1; return true }
            guard emitted < limit else { return false }
            emitted += 1
            try body(QueryRank(id: id, score: score), try wanted.map { try context.label(of: id, $0) })
            return emitted < limit
        }
        // Candidates: from the class index when the filter pins a top-1 class, from the taint
        // partitions when it requires a tag, else every visible id (both already respect the clearance).
        var candidates: [UInt64]? = nil
        if let pinned = context.pinnedTop1 {
            candidates = try samples(withTop1: pinned.classIndex, in: LabelSetReference(name: pinned.set.name, version: pinned.version))
            plan.index = (pinned.set.name, pinned.version, pinned.classIndex)
        }
        if let tag = context.pinnedTag {
            let tagged = try samples(taggedWith: tag)
            plan.partition = tag
            candidates = candidates.map { $0.filter { tagged.contains($0) } } ?? tagged.sorted()
        }
        // Ids in batches, so labels from projectors are regenerated one matrix product at a time.
        var batch: [UInt64] = []
        batch.reserveCapacity(QueryContext.batchSize)
        func run(_ visit: (UInt64) throws -> Bool) throws -> Bool {
            try context.prefetch(batch)
            defer { batch.removeAll(keepingCapacity: true); context.dropPrefetched() }
            for id in batch where try !visit(id) { return false }
            return true
        }
        func stream(_ visit: (UInt64) throws -> Bool) throws {
            if let candidates {
                for id in (descending ? candidates.reversed() : candidates) {
                    batch.append(id)
                    if batch.count == QueryContext.batchSize, try !run(visit) { return }
                }
            } else {
                let visibility = try sampleVisibility()
                var stopped = false
                try walkSampleIDs(descending: descending) { id in
                    guard visibility.admits(id) else { return true }
                    batch.append(id)
                    if batch.count == QueryContext.batchSize, try !run(visit) { stopped = true; return false }
                    return true
                }
                if stopped { return }
            }
            _ = try run(visit)
        }
        switch order {
        case .id:
            try stream { id in
                plan.examined += 1
                guard try context.matches(id) else { return true }
                plan.matched += 1
                return try deliver(id)
            }
        case .confidence(let reference), .margin(let reference), .entropy(let reference):
            var rows = BoundedSelection<(id: UInt64, score: Float?)>(capacity: limit == .max ? Int.max : offset + limit) {
                QueryContext.before($0, $1, descending: descending)
            }
            let classCount = store.schema.classes.count
            try stream { id in
                plan.examined += 1
                guard try context.matches(id) else { return true }
                plan.matched += 1
                rows.insert((id, try context.label(of: id, reference).map { order.score($0, classCount: classCount) }))
                return true
            }
            for row in rows.sorted() where try !deliver(row.id, score: row.score) { break }
        }
        return plan
    }
}

extension Transaction {
    /// A predicate for `filter` bound to this transaction (label sets resolved once), e.g. to
    /// restrict ``nearestNeighbors(of:queries:k:metric:include:)``.
    public func matcher(for filter: QueryExpression) throws -> (UInt64) throws -> Bool {
        let context = try QueryContext(tx: self, filter: filter, order: .id)
        return { id in try context.matches(id) }
    }
}

/// Where a query's `label(NAME)` (or a kNN label's neighbours' labels) comes from: a stored
/// label set, or a projector regenerating labels from embeddings on read.
enum QueryLabelSource {
    case stored(LabelSet, Int)
    case projector(LoadedProjector)

    /// `NAME@VERSION`: the label set version, or the projector version, it resolves to.
    var name: String {
        switch self {
        case .stored(let set, let version): "\(set.name)@\(version)"
        case .projector(let loaded): "\(loaded.projector.name)@\(loaded.version.version)"
        }
    }

    /// The source as the provenance log names what an activity used.
    var entity: ProvenanceEntity {
        switch self {
        case .stored(let set, let version): ProvenanceEntity(kind: "label_set", name: set.name, version: version)
        case .projector(let loaded): ProvenanceEntity(kind: "projector", name: loaded.projector.name, version: loaded.version.version)
        }
    }
}

extension Transaction {
    /// A label set of that name, else a projector of that name; else the label set is unknown.
    /// A per-view set is refused unless `perView` (the callers that read one label per sample —
    /// agreement, consensus, label issues, kNN labels, per-sample query terms — cannot use it).
    func labelSource(_ reference: LabelSetReference, for operation: String = "a query", perView: Bool = false) throws -> QueryLabelSource {
        if try labelSet(named: reference.name) != nil {
            let (set, version) = try resolve(reference)
            if !perView { try requirePerSample(set, for: operation) }
            return .stored(set, version)
        }
        if try projector(named: reference.name) != nil { return .projector(try load(reference)) }
        throw LabelError.unknownLabelSet(reference.name)
    }
}

/// A filter bound to one transaction: label sources resolved, class names turned into indices.
struct QueryContext {
    /// Samples per batch of regenerated labels.
    static let batchSize = 256

    let tx: Transaction
    let filter: QueryExpression?
    var sources: [String: QueryLabelSource] = [:]
    /// Per-view sets named by `views` and `any_view` terms.
    var viewSources: [String: QueryLabelSource] = [:]
    let classes: [String]
    /// A top-level `label(S).top1 = C` the class index can answer.
    var pinnedTop1: (set: LabelSet, version: Int, classIndex: Int)?
    /// A top-level `tagged('T')` the taint partitions can answer.
    var pinnedTag: String?
    /// Labels regenerated for the current batch, by source and id.
    let prefetched = PrefetchedLabels()

    init(tx: Transaction, filter: QueryExpression?, order: QueryOrder, labels: [LabelSetReference] = []) throws {
        self.tx = tx
        self.filter = filter
        self.classes = tx.store.schema.classes
        if let filter { try collect(filter) }
        if let reference = order.scoredSource { _ = try resolveSource(reference) }
        for reference in labels { _ = try resolveSource(reference) }
        // Only a conjunct at the top level may narrow the candidates.
        func conjuncts(_ e: QueryExpression) -> [QueryExpression] {
            if case .and(let parts) = e { return parts.flatMap(conjuncts) }
            return [e]
        }
        for part in filter.map(conjuncts) ?? [] {
            if case .comparison(.top1(let reference), .equal, let value) = part, pinnedTop1 == nil, !value.isLabelTop1,
               case .stored(let set, let version) = try resolveSource(reference) {
                pinnedTop1 = (set, version, try classIndex(value))
            }
            if case .tagged(let tag) = part, pinnedTag == nil { pinnedTag = tag }
        }
    }

    private mutating func collect(_ e: QueryExpression) throws {
        switch e {
        case .and(let parts), .or(let parts): for part in parts { try collect(part) }
        case .not(let a): try collect(a)
        case .tagged(let tag):
            // Like a clearance, a filter naming a tag the store never registered is a typo, not "no rows".
            guard try tx.registeredTags().contains(tag) else { throw QueryError.unknownTag(tag) }
        case .flowsTo(let text):
            let bound = try Clearance(parsing: text)
            do { try tx.validate(bound) } catch TaintError.unknownTag(let tag) { throw QueryError.unknownTag(tag) }
        case .has(let reference, let value): _ = try resolveSource(reference); try checkClass(value)
        case .sourceTagged(let reference, _): _ = try resolveSource(reference)
        case .comparison(let operand, _, let value):
            switch operand {
            case .top1(let r): _ = try resolveSource(r); if case .labelTop1(let b) = value { _ = try resolveSource(b) }
            case .confidence(let r), .labelVersion(let r), .agent(let r): _ = try resolveSource(r)
            case .viewCount(let r): try resolveViewSource(r)
            case .anyView(let r, let property):
                try resolveViewSource(r)
                if case .probability(let c) = property { try checkClass(c) }
                if case .labelTop1(let b) = value { _ = try resolveSource(b) }
            case .probability(let r, let c): _ = try resolveSource(r); try checkClass(c)
            case .id, .meta: break
            }
        }
    }

    /// Resolves a class argument: a name or index of the schema, or another label set's top-1.
    private mutating func checkClass(_ value: QueryValue) throws {
        if case .labelTop1(let reference) = value { _ = try resolveSource(reference) } else { _ = try classIndex(value) }
    }

    /// The source `reference` names, resolved once per context.
    private mutating func resolveSource(_ reference: LabelSetReference) throws -> QueryLabelSource {
        if let known = sources[reference.description] { return known }
        let source: QueryLabelSource
        do { source = try tx.labelSource(reference) } catch LabelError.perViewSet {
            throw QueryError.unsupported("label(\(reference)) holds labels per augmented view: filter it with label(\(reference)).views or label(\(reference)).any_view.top1, .any_view.confidence, .any_view.prob(C)")
        }
        sources[reference.description] = source
        return source
    }

    /// Resolves a per-view set for `views` and `any_view` terms, once per context (kept apart from
    /// per-sample resolutions, which refuse per-view sets).
    private mutating func resolveViewSource(_ reference: LabelSetReference) throws {
        guard viewSources[reference.description] == nil else { return }
        let source = try tx.labelSource(reference, perView: true)
        guard case .stored(let set, _) = source, set.perView else {
            throw QueryError.unsupported("label(\(reference)).views and .any_view apply to per-view label sets; `\(reference.name)` holds one label per sample")
        }
        viewSources[reference.description] = source
    }

    /// Regenerates, in one batch per projector, the labels of `ids` every projector source needs.
    func prefetch(_ ids: [UInt64]) throws {
        guard !ids.isEmpty else { return }
        for (key, source) in sources {
            guard case .projector(let loaded) = source else { continue }
            var labels: [UInt64: Label] = [:]
            for regenerated in try tx.regenerate(ids, with: loaded) {
                labels[regenerated.id] = Label(version: loaded.version.version, soft: regenerated.probabilities, taint: regenerated.taint)
            }
            prefetched.labels[key] = labels
        }
    }

    func dropPrefetched() { prefetched.labels.removeAll(keepingCapacity: true) }

    /// The label of sample `id` from the source `reference` names (resolved when the context was made).
    func label(of id: UInt64, _ reference: LabelSetReference, perView: Bool = false) throws -> Label? {
        switch (perView ? viewSources : sources)[reference.description]! {
        case .stored(let set, let version):
            return try tx.label(of: id, set: set, version: version)
        case .projector(let loaded):
            if let known = prefetched.labels[reference.description]?[id] { return known }
            guard try tx.contains(id) else { return nil }
            let regenerated = try tx.regenerate([id], with: loaded)[0]
            return Label(version: loaded.version.version, soft: regenerated.probabilities, taint: regenerated.taint)
        }
    }

    /// Who wrote a label and the label of that source: the import of the row's version, or the
    /// projector version's fit.
    func writer(of label: Label, _ reference: LabelSetReference) -> (agent: String, source: TaintLabel) {
        switch sources[reference.description]! {
        case .stored(let set, _):
            // Row versions were checked against the set's versions when the row was decoded.
            let version = set.versions[label.version - 1]
            return (version.agent, version.sourceLabel)
        case .projector(let loaded):
            return (loaded.version.agent, loaded.taint)
        }
    }

    func classIndex(_ value: QueryValue) throws -> Int {
        switch value {
        case .string(let name):
            guard let index = classes.firstIndex(of: name) else { throw QueryError.unknownClass(name) }
            return index
        case .integer(let i):
            guard i < UInt64(classes.count) else { throw QueryError.unknownClass("\(i)") }
            return Int(i)
        case .number(let d): throw QueryError.unknownClass("\(d)")
        case .labelTop1(let reference): throw QueryError.unsupported("label(\(reference)).top1 is a class only within a sample's evaluation")
        }
    }

    /// Score order (samples without a score last, in either direction), ties by ascending id.
    static func before(_ a: (id: UInt64, score: Float?), _ b: (id: UInt64, score: Float?), descending: Bool) -> Bool {
        switch (a.score, b.score) {
        case (let x?, let y?) where x != y: return descending ? x > y : x < y
        case (.some, nil): return true
        case (nil, .some): return false
        default: return a.id < b.id
        }
    }

    func matches(_ id: UInt64) throws -> Bool {
        guard let filter else { return true }
        var metadata: [String: JSONValue]? = nil
        var labels: [String: Label?] = [:]
        func label(_ reference: LabelSetReference) throws -> Label? {
            if let cached = labels[reference.description] { return cached }
            let value = try self.label(of: id, reference)
            labels[reference.description] = value
            return value
        }
        var viewLabels: [String: Label?] = [:]
        func viewLabel(_ reference: LabelSetReference) throws -> Label? {
            if let cached = viewLabels[reference.description] { return cached }
            let value = try self.label(of: id, reference, perView: true)
            viewLabels[reference.description] = value
            return value
        }
        // A class argument for this sample: a literal class, or another label set's top-1 (nil
        // when that set does not label the sample: the comparison is then false).
        func sampleClass(_ value: QueryValue) throws -> Int? {
            if case .labelTop1(let reference) = value { return try label(reference)?.top1?.classIndex }
            return try classIndex(value)
        }
        // A comparison of one label's top-1, confidence or class probability (a sample's label,
        // or one view's).
        func compare(_ property: ViewProperty, _ l: Label?, _ op: QueryComparison, _ value: QueryValue) throws -> Bool {
            guard let l else { return false }
            switch property {
            case .top1:
                // The row's top-1 class as the class postings define it (storage.md §10.5: the
                // soft label's argmax, else the hard label), so a scan and the index agree on a
                // row that carries both kinds.
                guard let top = l.top1?.classIndex, let other = try sampleClass(value) else { return false }
                return op.holds(top, other)
            case .confidence:
                guard let top = l.top1, let b = value.number else { return false }
                return op.holds(Double(top.confidence), b)
            case .probability(let c):
                guard let b = value.number, let c = try sampleClass(c) else { return false }
                return op.holds(Double(l.distribution(classCount: classes.count)[c]), b)
            }
        }
        func evaluate(_ e: QueryExpression) throws -> Bool {
            switch e {
            case .and(let parts): return try parts.allSatisfy(evaluate)
            case .or(let parts): return try parts.contains(where: evaluate)
            case .not(let a): return try !evaluate(a)
            case .tagged(let tag):
                guard let taint = try tx.taintLabel(of: id) else { return false }
                return taint.namedTags.contains(tag)
            case .flowsTo(let text):
                guard let taint = try tx.taintLabel(of: id) else { return false }
                return try Clearance(parsing: text).admits(taint)
            case .has(let reference, let value):
                guard let l = try label(reference), let c = try sampleClass(value) else { return false }
                return l.hard == c || (l.multi?.contains(c) ?? false)
            case .sourceTagged(let reference, let tag):
                guard let l = try label(reference) else { return false }
                return writer(of: l, reference).source.namedTags.contains(tag)
            case .comparison(let operand, let op, let value):
                switch operand {
                case .id:
                    guard case .integer(let v) = value else { return false }
                    return op.holds(id, v)
                case .meta(let field):
                    if metadata == nil { metadata = try tx.withSample(id) { try $0.metadata() } ?? [:] }
                    return op.holds(metadata?[field], value)
                case .top1(let reference): return try compare(.top1, try label(reference), op, value)
                case .confidence(let reference): return try compare(.confidence, try label(reference), op, value)
                case .probability(let reference, let c): return try compare(.probability(c), try label(reference), op, value)
                case .viewCount(let reference):
                    // A visible sample without a row has no views: 0, so `views = 0` finds it.
                    guard let b = value.number else { return false }
                    return op.holds(Double(try viewLabel(reference)?.views?.count ?? 0), b)
                case .anyView(let reference, let property):
                    return try (try viewLabel(reference)?.views ?? []).contains { try compare(property, $0.label, op, value) }
                case .labelVersion(let reference):
                    guard let l = try label(reference), case .integer(let v) = value else { return false }
                    return op.holds(UInt64(l.version), v)
                case .agent(let reference):
                    guard let l = try label(reference), case .string(let name) = value else { return false }
                    return op.holds(writer(of: l, reference).agent, name)
                }
            }
        }
        return try evaluate(filter)
    }

}

extension QueryComparison {
    /// Whether `a OP b` holds.
    func holds<T: Comparable>(_ a: T, _ b: T) -> Bool {
        switch self {
        case .equal: a == b
        case .notEqual: a != b
        case .less: a < b
        case .lessOrEqual: a <= b
        case .greater: a > b
        case .greaterOrEqual: a >= b
        }
    }

    /// Whether `meta.FIELD OP value` holds for a field's stored value: strings compare with
    /// strings, numbers with numbers; a missing field or a mix of kinds never matches.
    func holds(_ stored: JSONValue?, _ value: QueryValue) -> Bool {
        guard let stored else { return false }
        switch (stored, value) {
        case (.string(let a), .string(let b)): return holds(a, b)
        case (_, .string): return false
        default:
            guard let a = stored.doubleValue, let b = value.number else { return false }
            return holds(a, b)
        }
    }
}

extension QueryValue {
    /// True for `label(B).top1`.
    var isLabelTop1: Bool { if case .labelTop1 = self { true } else { false } }

    /// The value as a number, when it is one.
    var number: Double? {
        switch self {
        case .integer(let i): Double(i)
        case .number(let d): d
        case .string, .labelTop1: nil
        }
    }
}

/// Labels regenerated for one batch of a query, by label source and sample id (a class, so the
/// context's non-mutating methods can fill it).
final class PrefetchedLabels {
    var labels: [String: [UInt64: Label]] = [:]
}
