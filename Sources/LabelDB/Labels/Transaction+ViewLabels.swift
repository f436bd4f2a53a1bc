import Foundation

/// A per-view import's views, checked before anything is read or written: each valid, its
/// extras normalised, one per label row, each (id, view number) once; and the rows in (id, view)
/// order, as the rows are built.
struct ViewImport {
    var views: [AugmentedView]
    var order: [Int]

    init(_ given: [AugmentedView], ids: [UInt64], kind: LabelKind) throws {
        guard kind != .multi else { throw LabelError.invalidLabel(row: 0, reason: "per-view labels are hard or soft labels, not multi-labels") }
        guard given.count == ids.count else {
            throw LabelError.invalidLabel(row: min(given.count, ids.count), reason: "\(given.count) views for \(ids.count) label rows (one view per row)")
        }
        views = given
        for row in views.indices {
            if let problem = views[row].problem() { throw LabelError.invalidLabel(row: row, reason: problem) }
            if let extra = views[row].extra { views[row].extra = try Self.normalised(extra, row: row) }
        }
        order = Self.order(ids: ids, views: views)
        for k in 1..<max(order.count, 1) where ids[order[k]] == ids[order[k - 1]] && views[order[k]].view == views[order[k - 1]].view {
            throw LabelError.invalidLabel(row: order[k], reason: "view \(views[order[k]].view) of id \(ids[order[k]]) appears twice (rows \(order[k - 1]) and \(order[k]))")
        }
    }

    /// Members the views file and readers use for a view's own fields and label: an extra member
    /// of the same name would shadow one of them on output.
    static let reservedMembers: Set<String> = AugmentedView.namedMembers.union(["hard", "top"])

    /// An extra's JSON object as stored: compact, keys sorted (as every stored JSON, R-41), no
    /// member named like a view field or label; anything but an object is refused.
    static func normalised(_ extra: String, row: Int) throws -> String? {
        guard case .object(let members)? = try? JSONValue.parse(extra) else {
            throw LabelError.invalidLabel(row: row, reason: "extra parameters are not a JSON object")
        }
        if let clash = members.keys.sorted().first(where: reservedMembers.contains) {
            throw LabelError.invalidLabel(row: row, reason: "extra member '\(clash)' is reserved (view, crop, flip, epoch, seed, hard and top name a view's own fields)")
        }
        return members.isEmpty ? nil : JSONValue.object(members).serialized()
    }

    /// The rows in (id, view number) order; already ordered input (the usual case) is not sorted.
    static func order(ids: [UInt64], views: [AugmentedView]) -> [Int] {
        func before(_ a: Int, _ b: Int) -> Bool { (ids[a], views[a].view, a) < (ids[b], views[b].view, b) }
        let identity = Array(ids.indices)
        if zip(identity, identity.dropFirst()).allSatisfy({ before($0, $1) }) { return identity }
        return identity.sorted(by: before)
    }
}

extension Transaction {
    /// The views of a per-view row, each with its label (classes checked, soft labels decoded).
    func decodeViews(_ section: ViewSection, set: LabelSet) throws -> [ViewLabel] {
        try section.decode(codec: set.codec, classCount: store.schema.classes.count)
    }

    /// Resolves a reference to a per-view set; a per-sample one is refused.
    func resolveViews(_ reference: LabelSetReference) throws -> (set: LabelSet, version: Int) {
        let resolved = try resolve(reference)
        guard resolved.set.perView else { throw LabelError.viewLayout(set: resolved.set.name, perView: false) }
        return resolved
    }

    /// Throws ``LabelError/perViewSet(set:operation:)`` when `set` is per-view: for operations
    /// that read one label per sample (`operation` names them in the message).
    public func requirePerSample(_ set: LabelSet, for operation: String) throws {
        if set.perView { throw LabelError.perViewSet(set: set.name, operation: operation) }
    }

    /// Views per labelled sample in the referenced version of a per-view set, as the clearance
    /// sees it: (samples, min, total, max) — read from each row's view count, nothing decoded.
    public func viewCounts(in reference: LabelSetReference) throws -> (samples: Int, min: Int, total: Int, max: Int) {
        let (set, version) = try resolveViews(reference)
        var result = (samples: 0, min: Int.max, total: 0, max: 0)
        try forEachVisibleRowInStorageOrder(set: set, version: version) { id, rowVersion, row, _ in
            let count: Int
            do {
                try row.checkLayout(perView: true)
                count = try row.views!.parse(codec: set.codec, classCount: store.schema.classes.count).count
            } catch {
                throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(rowVersion) sample \(id)")
            }
            result = (result.samples + 1, Swift.min(result.min, count), result.total + count, Swift.max(result.max, count))
            return true
        }
        if result.samples == 0 { result.min = 0 }
        return result
    }
}

extension WriteTransaction {
    /// The rows of a per-view import: one per sample, holding all its views of this import in
    /// ascending view number — a sample's whole view list for this version (nothing carries
    /// forward from earlier rows). Per-view rows have no top-1 class, so no postings.
    func viewRows(_ input: ImportInput, views checked: ViewImport, set: LabelSet, version: UInt32) throws -> BuiltRows {
        let classCount = store.schema.classes.count
        var softRows = input.softRows
        var built = BuiltRows(fidelity: FidelityAccumulator(classCount: classCount))
        var decoded = [Float](repeating: 0, count: classCount)
        let order = checked.order, views = checked.views
        var start = 0
        while start < order.count {
            let id = input.ids[order[start]], slot = input.slots[order[start]]
            var end = start + 1
            while end < order.count, input.ids[order[end]] == id { end += 1 }
            let group = order[start..<end]
            var hard: [UInt32]? = nil, soft: [[UInt8]]? = nil
            switch input.values {
            case .hard(let classes): hard = group.map { UInt32(classes[$0]) }
            case .soft, .topK:
                soft = try group.map { try encodeSoft(input, row: $0, set: set, softRows: &softRows, decoded: &decoded, fidelity: &built.fidelity) }
            case .multi: break   // refused by ViewImport.check
            }
            var row = NewRow(id: id, slot: slot)
            row.views = ViewRowEncoding.encode(views: group.map { views[$0] }, hard: hard, soft: soft)
            built.rows.append(row)
            if try !hasRow(of: id, slot: slot, set: set, before: Int(version)) { built.newlyLabelled += 1 }
            start = end
        }
        return built
    }
}
