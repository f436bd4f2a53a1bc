import Foundation

/// Checks on a per-view import's views, before anything is read or written.
enum ViewImport {
    /// Every view valid, one per label row, each (id, view number) once; multi-labels refused.
    static func check(_ views: [AugmentedView], ids: [UInt64], kind: LabelKind) throws {
        guard kind != .multi else { throw LabelError.invalidLabel(row: 0, reason: "per-view labels are hard or soft labels, not multi-labels") }
        guard views.count == ids.count else {
            throw LabelError.invalidLabel(row: min(views.count, ids.count), reason: "\(views.count) views for \(ids.count) label rows (one view per row)")
        }
        for (row, view) in views.enumerated() {
            if let problem = view.problem() { throw LabelError.invalidLabel(row: row, reason: problem) }
        }
        let order = self.order(ids: ids, views: views)
        for k in 1..<max(order.count, 1) where ids[order[k]] == ids[order[k - 1]] && views[order[k]].view == views[order[k - 1]].view {
            throw LabelError.invalidLabel(row: order[k], reason: "view \(views[order[k]].view) of id \(ids[order[k]]) appears twice (rows \(order[k - 1]) and \(order[k]))")
        }
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
    /// The views of a per-view row, each with its label (classes checked, soft labels decoded);
    /// `only`: just the view at that index (taken mod the view count), for a replay read.
    func decodeViews(_ section: ViewSection, set: LabelSet, only index: Int? = nil) throws -> [ViewLabel] {
        try section.decode(codec: set.codec, classCount: store.schema.classes.count, only: index)
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
            guard let section = row.views else {
                throw StoreError.corruptRecord(store: store.path, table: Table.labelBlocks.rawValue, key: "\(set.name)@\(rowVersion) sample \(id)", detail: "a per-sample row in a per-view set")
            }
            let count: Int
            do { count = try section.parse(codec: set.codec, classCount: store.schema.classes.count).count } catch {
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
    func viewRows(_ input: ImportInput, views: [AugmentedView], set: LabelSet, version: UInt32) throws -> BuiltRows {
        let classCount = store.schema.classes.count
        var softRows = input.softRows
        var built = BuiltRows(fidelity: FidelityAccumulator(classCount: classCount))
        var decoded = [Float](repeating: 0, count: classCount)
        let order = ViewImport.order(ids: input.ids, views: views)
        var start = 0
        while start < order.count {
            let id = input.ids[order[start]], slot = input.slots[order[start]]
            var end = start + 1
            while end < order.count, input.ids[order[end]] == id { end += 1 }
            let group = order[start..<end]
            var hadRow = false
            try forEachRow(of: id, slot: slot, set: set, atOrBefore: Int(version) - 1) { _, _ in hadRow = true; return false }
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
            if !hadRow { built.newlyLabelled += 1 }
            start = end
        }
        return built
    }
}
