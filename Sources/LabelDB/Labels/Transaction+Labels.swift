import Foundation

/// The labels one import brings, row-aligned with its ids.
public enum LabelValues: Sendable {
    /// Probabilities, `rows × classes`, row-major; each row must sum to 1 (within 1e-3).
    case soft([Float])
    /// One class index per row.
    case hard([Int])
    /// A set of class indices per row.
    case multi([[Int]])
    /// Soft labels as they often arrive: each row's K most probable classes and their
    /// probabilities, and the leftover mass (the rest of the classes, spread evenly on decode).
    case topK(TopKRows)

    /// The kind of label the values are.
    public var kind: LabelKind {
        switch self {
        case .soft, .topK: .soft
        case .hard: .hard
        case .multi: .multi
        }
    }
}

/// Compact soft labels: per row K classes and probabilities (row-major, `rows × k`), and the
/// leftover mass per row (1 − Σ probabilities when nil).
public struct TopKRows: Sendable {
    /// K, the classes per row.
    public var k: Int
    /// `rows × k` class indices.
    public var classes: [Int]
    /// `rows × k` probabilities.
    public var probabilities: [Float]
    /// The mass outside each row's classes, or nil for 1 − Σ.
    public var leftover: [Float]?

    /// Rows from their parts.
    public init(k: Int, classes: [Int], probabilities: [Float], leftover: [Float]? = nil) {
        self.k = k
        self.classes = classes
        self.probabilities = probabilities
        self.leftover = leftover
    }

    /// The row's entries, most probable first (ties by the smaller class), and its leftover.
    func row(_ r: Int) -> (entries: [(Int, Float)], rest: Float) {
        var entries: [(Int, Float)] = []
        entries.reserveCapacity(k)
        for j in 0..<k { entries.append((classes[r * k + j], probabilities[r * k + j])) }
        entries.sort { (a: (Int, Float), b: (Int, Float)) -> Bool in a.1 > b.1 || (a.1 == b.1 && a.0 < b.0) }
        return (entries, leftover?[r] ?? 0)
    }

    /// The row as a distribution over `classCount` classes (the leftover spread evenly).
    func dense(_ r: Int, classCount: Int) -> [Float] {
        let (entries, rest) = row(r)
        var p = [Float](repeating: classCount > k ? rest / Float(classCount - k) : 0, count: classCount)
        for (c, v) in entries { p[c] = v }
        return p
    }

    /// Checks shapes, classes (in range, distinct per row) and probabilities (finite, ≥ 0, each
    /// row with its leftover summing to 1 within 1e-3 unless `normalize`, which rescales it), and
    /// fills in the leftover when none was given.
    func validated(rows: Int, classCount: Int, normalize: Bool) throws -> TopKRows {
        guard k >= 1, k <= classCount else { throw LabelError.invalidLabel(row: 0, reason: "K = \(k) classes per row, expected 1…\(classCount)") }
        guard classes.count == rows * k, probabilities.count == rows * k else {
            throw LabelError.invalidLabel(row: 0, reason: "\(classes.count) classes and \(probabilities.count) probabilities for \(rows) rows × K = \(k)")
        }
        if let leftover, leftover.count != rows { throw LabelError.invalidLabel(row: 0, reason: "\(leftover.count) leftover values for \(rows) rows") }
        var out = self
        var rest = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var seen = Set<Int>(), sum: Double = 0
            for j in 0..<k {
                let c = classes[r * k + j], v = probabilities[r * k + j]
                guard c >= 0, c < classCount else { throw LabelError.invalidLabel(row: r, reason: "class \(c) is out of range 0…\(classCount - 1)") }
                // A short row is searched in place; a set only pays off for long ones.
                let repeated = k <= 32 ? classes[(r * k)..<(r * k + j)].contains(c) : !seen.insert(c).inserted
                guard !repeated else { throw LabelError.invalidLabel(row: r, reason: "class \(c) appears twice") }
                guard v.isFinite, v >= 0 else { throw LabelError.invalidLabel(row: r, reason: "probability of class \(c) is \(v)") }
                sum += Double(v)
            }
            var left = leftover.map { Double($0[r]) } ?? max(0, 1 - sum)
            guard left.isFinite, left >= 0 else { throw LabelError.invalidLabel(row: r, reason: "leftover mass is \(left)") }
            if k == classCount { left = 0 }
            if abs(sum + left - 1) > 1e-3 {
                guard normalize, sum + left > 0 else {
                    throw LabelError.invalidLabel(row: r, reason: "probabilities and leftover sum to \(sum + left), not 1 (ask to normalize to rescale rows)")
                }
                let scale = 1 / (sum + left)
                for j in 0..<k { out.probabilities[r * k + j] = Float(Double(probabilities[r * k + j]) * scale) }
                left *= scale
            }
            rest[r] = Float(left)
        }
        out.leftover = rest
        return out
    }
}

// Reading label sets and labels.
extension Transaction {
    /// Every label set, by name.
    public func labelSets() throws -> [LabelSet] {
        try names(in: .labelSets).compactMap { try labelSet(named: $0) }
    }

    /// 1 + the largest id among the records of a name-keyed table (label sets, projectors).
    func nextRecordID<T: IdentifiedRecord>(in table: Table, as type: T.Type) throws -> UInt32 {
        var next: UInt32 = 1
        try walk(table, from: nil) { key, value in
            do { next = max(next, try LabelRecord.decodeJSON(T.self, key: key, value).id + 1) } catch {
                throw contextualize(error, table: table, key: String(decoding: key, as: UTF8.self))
            }
            return true
        }
        return next
    }

    /// The keys of a table keyed by UTF-8 names (label sets, projectors, heads), in key order.
    func names(in table: Table) throws -> [String] {
        var names: [String] = []
        try walk(table, from: nil) { key, _ in
            names.append(String(decoding: key, as: UTF8.self))
            return true
        }
        return names
    }

    /// Versions 1…latest of a label set or projector (`id`), each a checksummed JSON record keyed
    /// by id u32 BE + version u32 BE; a missing or damaged one throws, naming `name@version`.
    func versionRecords<T: Decodable>(_ type: T.Type, in table: Table, id: UInt32, latest: Int, name: String) throws -> [T] {
        guard latest > 0 else { return [] }
        // Versions 1…latest each have a record, so the table holds at least that many (and a
        // damaged count cannot make this allocate without bound).
        guard latest <= (try entries(table)) else {
            throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: name, detail: "latest version \(latest), but the table holds \(try entries(table)) records")
        }
        return try (1...latest).map { v in
            let key = LabelRecord.versionKey(set: id, version: UInt32(v))
            let record: T? = try withValue(table, key: key) { bytes in
                guard let bytes else { return nil }
                do { return try key.withUnsafeBytes { try LabelRecord.decodeJSON(T.self, key: $0, bytes) } } catch {
                    throw contextualize(error, table: table, key: "\(name)@\(v)")
                }
            }
            guard let record else {
                throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "\(name)@\(v)", detail: "missing")
            }
            return record
        }
    }

    /// The label set `name`, or nil.
    public func labelSet(named name: String) throws -> LabelSet? {
        if let cached = snapshotCache?.labelSets[name] { return cached }
        let set = try decodeLabelSet(named: name)
        snapshotCache?.labelSets[name] = .some(set)
        return set
    }

    private func decodeLabelSet(named name: String) throws -> LabelSet? {
        let key = Array(name.utf8)
        guard let record = try labelSetRecord(key: key) else { return nil }
        var versions = try versionRecords(LabelSetVersion.self, in: .labelVersions, id: record.id, latest: record.latest, name: name)
        if try !seesEverything { for v in versions.indices { versions[v].redactStatistics() } }
        let codec = try record.codec.map { try SoftLabelCodec(parsing: $0) }
        var set = LabelSet(name: name, id: record.id, codec: codec, versions: versions, perView: record.views == true)
        if let committed = store.committedLabelVersions {
            // Read as a corpus's shard: only what the manifest has committed exists.
            guard let cap = committed[name] else { return nil }
            set.recordedLatest = versions.count
            set.versions = Array(versions.prefix(cap))
        }
        return set
    }

    /// The stored record of `set@version`, unredacted whatever the clearance (callers decide what
    /// of it to show).
    func labelSetVersion(set: UInt32, version: UInt32, name: String) throws -> LabelSetVersion {
        let key = LabelRecord.versionKey(set: set, version: version)
        return try withValue(.labelVersions, key: key) { bytes in
            guard let bytes else {
                throw StoreError.corruptRecord(store: store.path, table: Table.labelVersions.rawValue, key: "\(name)@\(version)", detail: "missing")
            }
            do { return try key.withUnsafeBytes { try LabelRecord.decodeJSON(LabelSetVersion.self, key: $0, bytes) } } catch {
                throw contextualize(error, table: .labelVersions, key: "\(name)@\(version)")
            }
        }
    }

    func labelSetRecord(key: [UInt8]) throws -> LabelSetRecord? {
        try withValue(.labelSets, key: key) { bytes in
            guard let bytes else { return nil }
            do {
                return try key.withUnsafeBytes { try LabelRecord.decodeJSON(LabelSetRecord.self, key: $0, bytes) }
            } catch { throw contextualize(error, table: .labelSets, key: String(decoding: key, as: UTF8.self)) }
        }
    }

    /// The label set and the version a reference names (the latest when it names none).
    ///
    /// - Throws: ``LabelError/unknownLabelSet(_:)``, ``LabelError/unknownVersion(set:version:latest:)``.
    public func resolve(_ reference: LabelSetReference) throws -> (set: LabelSet, version: Int) {
        guard let set = try labelSet(named: reference.name) else { throw LabelError.unknownLabelSet(reference.name) }
        let version = reference.version ?? set.latest
        guard version >= 1, version <= set.latest else {
            throw LabelError.unknownVersion(set: set.name, version: version, latest: set.latest)
        }
        guard !set.versions[version - 1].isDropped else {
            throw LabelError.droppedVersion(set: set.name, version: version)
        }
        return (set, version)
    }

    /// The label of sample `id` in the referenced version, or nil when it has none there.
    public func label(of id: UInt64, in reference: LabelSetReference) throws -> Label? {
        let (set, version) = try resolve(reference)
        return try label(of: id, set: set, version: version)
    }

    /// The label of sample `id` in `version` of an already resolved label set — for loops that
    /// read many samples, so the set's records are not decoded again for each one.
    ///
    /// The label is the sample's newest row at or before `version` that the clearance admits (its
    /// sample's taint label joined with the source label of the import that wrote it), so a
    /// newer row the clearance cannot see neither shows nor hides the older one (R-16). Nil when
    /// there is none.
    public func label(of id: UInt64, set: LabelSet, version: Int) throws -> Label? {
        guard let sample = try visibleSample(id) else { return nil }
        return try withVisibleRow(of: id, slot: sample.slot, sampleTaint: sample.taint, set: set, version: version) { found in
            guard let found else { return nil }
            var label = try decodeLabel(found.row, version: found.version, sample: id, set: set)
            label.taint = found.taint
            return label
        }
    }

    /// The taint label id of stored sample `id` (checksum verified), or nil when it is absent or
    /// invisible under the clearance.
    func sampleTaintID(_ id: UInt64) throws -> UInt32? {
        try visibleSample(id)?.taint
    }

    /// The slot and taint label id of stored sample `id` (checksum verified), or nil when it is
    /// absent or invisible under the clearance.
    func visibleSample(_ id: UInt64) throws -> (slot: UInt64, taint: UInt32)? {
        try withValue(.samples, key: id) { bytes in
            guard let bytes else { return nil }
            let record = try decodeSampleRecord(id: id, bytes)
            return try admits(labelID: record.taintLabel) ? (record.slot, record.taintLabel) : nil
        }
    }

    /// The taint of a label row written by `rowVersion` of `set` for a sample with label id
    /// `sampleTaint`: the join of the two; nil when the clearance does not admit it.
    func labelTaint(sampleTaint: UInt32, sample id: UInt64, set: LabelSet, rowVersion: Int) throws -> TaintLabel? {
        let state = taint
        let memo = LabelTaintKey(sample: sampleTaint, set: set.id, version: rowVersion)
        if let known = state.labelTaints[memo] { return known }
        guard rowVersion >= 1, rowVersion <= set.versions.count else {
            throw StoreError.corruptRecord(store: store.path, table: try labelRowsTable.rawValue, key: "\(set.name) sample \(id)", detail: "row of version \(rowVersion), the set has \(set.versions.count)")
        }
        let joined = try taintLabel(id: sampleTaint, sample: id).join(set.versions[rowVersion - 1].sourceLabel)
        let result = clearance.admits(joined) ? joined : nil
        state.labelTaints[memo] = result
        return result
    }

    /// The taint label of sample `id`'s soft label in `version` of `set` as the clearance sees it
    /// (the newest admitted row ≤ version), or nil when that row holds no soft label or there is
    /// none; checks the row without decoding the distribution (regeneration asks this for every
    /// sample it reads).
    func visibleSoftLabelTaint(_ id: UInt64, set: LabelSet, version: Int) throws -> TaintLabel? {
        guard let sample = try visibleSample(id) else { return nil }
        return try withVisibleRow(of: id, slot: sample.slot, sampleTaint: sample.taint, set: set, version: version) { found in
            found?.row.soft != nil ? found?.taint : nil
        }
    }

    /// True when any row of sample `id` at or before `version` of `set` holds a soft label,
    /// whatever the clearance: a fit under some clearance may have used any of them (the newest
    /// its clearance admitted), so a relabel must reach every projector that could have.
    func hasAnySoftLabel(_ id: UInt64, set: LabelSet, version: Int) throws -> Bool {
        guard let slot = try storedSlot(of: id) else { return false }
        var found = false
        try forEachRow(of: id, slot: slot, set: set, atOrBefore: version) { _, row in
            found = row.soft != nil
            return !found
        }
        return found
    }

    /// The error for a key of the wrong length among a table's keys of one length: a damaged key,
    /// which must not be read as the end of the rows a walk wants.
    func damagedKey(_ length: Int, expected: Int, in table: Table) -> StoreError {
        StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "*", detail: "a key of \(length) bytes, expected \(expected); run verify")
    }

    /// Throws unless `version`, read from a label row's or index entry's key, is one of the set's:
    /// a damaged key's version would otherwise make a read skip the row without decoding it (and
    /// so without its checksum noticing), silently answering from an older one.
    func checkRowVersion(_ version: Int, set: LabelSet, sample: UInt64) throws {
        guard version >= 1, version <= set.storedLatest else {
            throw StoreError.corruptRecord(store: store.path, table: try labelRowsTable.rawValue, key: "\(set.name) sample \(sample)",
                                           detail: "a row of version \(version), the set has \(set.storedLatest); run verify")
        }
    }

    /// Throws unless a row's hard label and multi-label classes are among the schema's.
    func checkClasses(hard: UInt32?, multi: [UInt32]?) throws {
        let classCount = store.schema.classes.count
        if let hard, Int(hard) >= classCount { throw RecordDecodingError(detail: "hard label \(hard) ≥ \(classCount) classes") }
        if let multi, multi.contains(where: { Int($0) >= classCount }) { throw RecordDecodingError(detail: "multi-label class out of range") }
    }

    /// The codec of a set whose row holds a soft label: a set without one is damage.
    func softCodec(of set: LabelSet) throws -> SoftLabelCodec {
        guard let codec = set.codec else { throw RecordDecodingError(detail: "soft label in a set without a codec") }
        return codec
    }

    /// The class a new row's posting files it under — its ``Label/top1`` as a reader decodes it
    /// (the first most probable class of the decoded soft label, else the hard label) — decoded
    /// into `scratch` (C floats) rather than a new array per row; nil for a multi-label row.
    func top1(of row: WriteTransaction.NewRow, set: LabelSet, version: Int, scratch: inout [Float]) throws -> UInt32? {
        do {
            try checkClasses(hard: row.hard, multi: row.multi)
            guard let soft = row.soft else { return row.hard }
            let codec = try softCodec(of: set)
            try soft.withUnsafeBytes { bytes in try scratch.withUnsafeMutableBufferPointer { try codec.decode(bytes, into: $0) } }
            return UInt32(scratch.withUnsafeBufferPointer { argmax($0) })
        } catch {
            throw contextualize(error, table: try labelRowsTable, key: "\(set.name)@\(version) sample \(row.id)")
        }
    }

    /// The label a checked row holds, its classes checked against the schema and its soft label
    /// decoded; `version` and `sample` name it in errors.
    func decodeLabel(_ row: LabelRecord.Row, version: Int, sample: UInt64, set: LabelSet) throws -> Label {
        do {
            let classCount = store.schema.classes.count
            try row.checkLayout(perView: set.perView)
            if let views = row.views {
                var label = Label(version: version)
                label.views = try decodeViews(views, set: set)
                return label
            }
            try checkClasses(hard: row.hard, multi: row.multi)
            var label = Label(version: version)
            label.hard = row.hard.map(Int.init)
            label.multi = row.multi?.map(Int.init)
            if let soft = row.soft {
                let codec = try softCodec(of: set)
                var out = [Float](repeating: 0, count: classCount)
                try out.withUnsafeMutableBufferPointer { try codec.decode(soft, into: $0) }
                label.soft = out
            }
            return label
        } catch {
            throw contextualize(error, table: try labelRowsTable, key: "\(set.name)@\(version) sample \(sample)")
        }
    }

    /// Walks the labels of the referenced version in ascending sample id, from the first id ≥ `start`.
    public func forEachLabel(in reference: LabelSetReference, from start: UInt64 = 0, _ body: (UInt64, Label) throws -> Bool) throws {
        let (set, version) = try resolve(reference)
        try forEachLabel(set: set, version: version, from: start, body)
    }

    /// Walks the labels of the referenced version in the order they are stored (not id order),
    /// several times faster than ``forEachLabel(in:from:_:)``: for counts, statistics and maps
    /// keyed by id.
    public func forEachLabelInStorageOrder(in reference: LabelSetReference, _ body: (UInt64, Label) throws -> Bool) throws {
        let (set, version) = try resolve(reference)
        try forEachVisibleRowInStorageOrder(set: set, version: version) { id, rowVersion, row, taint in
            var label = try decodeLabel(row, version: rowVersion, sample: id, set: set)
            label.taint = taint
            return try body(id, label)
        }
    }

    func forEachLabel(set: LabelSet, version: Int, from start: UInt64 = 0, _ body: (UInt64, Label) throws -> Bool) throws {
        try forEachVisibleRow(set: set, version: version, from: start) { id, rowVersion, row, taint in
            var label = try decodeLabel(row, version: rowVersion, sample: id, set: set)
            label.taint = taint
            return try body(id, label)
        }
    }
}

// Importing labels.
extension WriteTransaction {
    /// Imports one version of label set `name`: rows for `ids` are added or replaced, every other
    /// sample keeps its label from the previous version. A replaced row keeps its other kinds
    /// (a hard import keeps the soft label) when the earlier row's source label flows to `source`;
    /// otherwise the new row holds only what this import brings. Creates the label set on first use.
    ///
    /// With `views`, the set holds labels per augmented view (format-spec §10.7): row i labels
    /// view `views[i]` of sample `ids[i]` (ids repeat once per view), and each sample's views
    /// replace its whole view list for this version — nothing carries forward (R-56). A set's
    /// first import decides whether it is per-view.
    ///
    /// For example:
    ///
    /// ```swift
    /// try store.write(clearance: .all) { tx in
    ///     try tx.importLabels(.hard([0, 2]), ids: [10, 11], into: "annotators", agent: "teamA")
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - codec: the soft-label codec; fixed by the set's first soft import (default `dense:f16`).
    ///   - source: the label source's taint label, joined into every row's.
    ///   - privileges: the integrity tags the writer may vouch for; every integrity tag of
    ///     `source` must be among them.
    ///   - normalize: rescale soft rows that do not sum to 1 instead of rejecting them.
    ///   - views: the view of each row, for a per-view set (hard or soft labels, not multi).
    /// - Throws: ``LabelError`` for bad rows or views, unknown ids, codec mismatches, an import
    ///   with views into a per-sample set or without into a per-view one (``LabelError/viewLayout(set:perView:)``);
    ///   ``TaintError/missingPrivilege(tag:action:)``; nothing is written.
    @discardableResult
    public func importLabels(
        _ values: LabelValues, ids: [UInt64], into name: String, codec requested: SoftLabelCodec? = nil, views: [AugmentedView]? = nil,
        agent: String, source: TaintLabel = .public, privileges: Set<String> = [], normalize: Bool = false, now: Date = Date()
    ) throws -> LabelSetVersion {
        guard !name.isEmpty, !name.contains("@"), !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw LabelError.invalidName(name)
        }
        try TaintChange.checkEndorsement([source], privileges: privileges)
        let classCount = store.schema.classes.count
        var input = ImportInput(values: values, ids: ids, source: source)
        input.softRows = try LabelValidation.check(values, rows: ids.count, classCount: classCount, normalize: normalize)
        if case .topK(let given) = values { input.topRows = try given.validated(rows: ids.count, classCount: classCount, normalize: normalize) }
        let checkedViews = try views.map { try ViewImport($0, ids: ids, kind: values.kind) }
        input.slots = try importSlots(ids, repeating: views != nil)

        let nameKey = Array(name.utf8)
        let nowMilliseconds = Int64(now.timeIntervalSince1970 * 1000)
        var record: LabelSetRecord
        if let existing = try labelSetRecord(key: nameKey) {
            record = existing
            guard (existing.views == true) == (views != nil) else { throw LabelError.viewLayout(set: name, perView: existing.views == true) }
        } else {
            record = LabelSetRecord(id: try nextRecordID(in: .labelSets, as: LabelSetRecord.self), codec: nil, createdMilliseconds: nowMilliseconds, latest: 0,
                                    views: views != nil ? true : nil)
        }
        let codec = try importCodec(&record, values: values, requested: requested, topRows: input.topRows, name: name)
        // The versions so far (unredacted: `labelled` counts hidden rows too); reading the earlier
        // rows checks their versions against them.
        let versions = try versionRecords(LabelSetVersion.self, in: .labelVersions, id: record.id, latest: record.latest, name: name)
        let set = LabelSet(name: name, id: record.id, codec: codec, versions: versions, perView: record.views == true)
        let version = UInt32(record.latest + 1)
        let built = if let checkedViews {
            try viewRows(input, views: checkedViews, set: set, version: version)
        } else {
            try sampleRows(input, set: set, version: version)
        }
        try putRows(built.rows, set: set, version: version)
        // Older versions' postings stay: a reader of an older version still finds its rows.
        try addPostings(built.postings, set: set.id, version: version)

        let info = LabelSetVersion(
            version: Int(version), agent: agent, timeMilliseconds: nowMilliseconds, kind: values.kind,
            rows: built.rows.count, labelled: (versions.last?.labelled ?? 0) + built.newlyLabelled, softBytes: built.fidelity.bytes,
            views: views?.count, fidelity: values.kind == .soft ? built.fidelity.result() : nil, provenance: try provenanceID(),
            source: source == .public ? nil : source)
        return try commitVersion(info, of: &record, name: nameKey, rows: built.rows.count)
    }

    /// The slot of each id, each stored and visible; ids once each, unless `repeating` (a per-view
    /// import names an id once per view).
    private func importSlots(_ ids: [UInt64], repeating: Bool) throws -> [UInt64] {
        if !repeating {
            let order = SampleValidation.ascendingOrder(ids)
            for k in 1..<max(ids.count, 1) where ids[order[k]] == ids[order[k - 1]] {
                throw LabelError.invalidLabel(row: order[k], reason: "id \(ids[order[k]]) appears more than once")
            }
        }
        var slots: [UInt64] = [], slotOf: [UInt64: UInt64] = [:]
        slots.reserveCapacity(ids.count)
        for id in ids {
            if let known = slotOf[id] { slots.append(known); continue }
            guard let slot = try visibleSample(id)?.slot else { throw LabelError.unknownSample(id) }
            slotOf[id] = slot
            slots.append(slot)
        }
        return slots
    }

    /// Writes the version record `info` and the set's record with its new latest version, and
    /// returns the version as this writer may see it.
    private func commitVersion(_ info: LabelSetVersion, of record: inout LabelSetRecord, name nameKey: [UInt8], rows: Int) throws -> LabelSetVersion {
        // Registers the source's tags, so clearances may name them.
        _ = try intern(info.sourceLabel)
        noteChange("label_rows_written", rows)
        let versionKey = LabelRecord.versionKey(set: record.id, version: UInt32(info.version))
        try put(.labelVersions, key: versionKey, bytes: LabelRecord.encodeJSON(info, key: versionKey))
        record.latest = info.version
        try put(.labelSets, key: nameKey, bytes: LabelRecord.encodeJSON(record, key: nameKey))
        // `labelled` counts every row of the set, hidden ones too: a writer who cannot see them
        // must not learn it (importing one label and watching the count would reveal whether a
        // hidden row labels that id). The other figures describe this import's own rows, all
        // of which the writer sees.
        var returned = info
        if try !seesEverything {
            returned.labelled = 0
            returned.statisticsRedacted = true
        }
        return returned
    }

    /// The codec an import encodes soft labels with: the set's own (a different request is a
    /// mismatch), or, for a set's first soft import, the requested one, recorded in `record`.
    private func importCodec(_ record: inout LabelSetRecord, values: LabelValues, requested: SoftLabelCodec?, topRows: TopKRows?, name: String) throws -> SoftLabelCodec? {
        let classCount = store.schema.classes.count
        var codec = try record.codec.map { try SoftLabelCodec(parsing: $0) }
        if values.kind == .soft {
            if let codec, let requested, codec != requested {
                throw LabelError.codecMismatch(set: name, existing: codec.description, requested: requested.description)
            }
            if codec == nil {
                // Compact input defaults to the codec that stores it as given.
                let chosen = requested ?? topRows.map { .topKF16($0.k) } ?? .denseF16
                try chosen.validate(classCount: classCount)
                codec = chosen
                record.codec = chosen.description
            }
        } else if let requested {
            try requested.validate(classCount: classCount)
            if let codec, codec != requested {
                throw LabelError.codecMismatch(set: name, existing: codec.description, requested: requested.description)
            }
        }
        return codec
    }

    /// The rows of a per-sample import, one per id, with their postings: each row carries
    /// forward the kinds the import does not bring from the sample's newest earlier row whose
    /// source label flows to this import's (R-17).
    private func sampleRows(_ input: ImportInput, set: LabelSet, version: UInt32) throws -> BuiltRows {
        let classCount = store.schema.classes.count
        var softRows = input.softRows
        var sourceFlows: [Int: Bool] = [:]
        func carriesForward(from previousVersion: Int) throws -> Bool {
            if let known = sourceFlows[previousVersion] { return known }
            let flows = try labelSetVersion(set: set.id, version: UInt32(previousVersion), name: set.name).sourceLabel.flows(to: input.source)
            sourceFlows[previousVersion] = flows
            return flows
        }
        var built = BuiltRows(fidelity: FidelityAccumulator(classCount: classCount))
        var decoded = [Float](repeating: 0, count: classCount)
        built.rows.reserveCapacity(input.ids.count)
        for row in SampleValidation.ascendingOrder(input.ids) {
            let id = input.ids[row]
            // Whether the sample had a row, and the newest earlier row whose source label flows
            // to this import's, whose other kinds carry forward: the new row reads under this
            // source's label, so carrying a licensed teacher's soft label into a public import
            // would declassify it; and skipping only the rows that do not flow, not the older
            // ones behind them, keeps what a row carries independent of rows its readers cannot
            // see (R-31).
            var hadRow = false
            var new = NewRow(id: id, slot: input.slots[row])
            try forEachRow(of: id, slot: input.slots[row], set: set, atOrBefore: Int(version) - 1) { rowVersion, previous in
                hadRow = true
                guard try carriesForward(from: rowVersion) else { return true }
                (new.hard, new.multi, new.soft) = (previous.hard, previous.multi, previous.soft.map { Array($0) })
                return false
            }
            switch input.values {
            case .hard(let classes): new.hard = UInt32(classes[row])
            case .multi(let sets): new.multi = Array(Set(sets[row])).sorted().map(UInt32.init)
            case .soft, .topK: new.soft = try encodeSoft(input, row: row, set: set, softRows: &softRows, decoded: &decoded, fidelity: &built.fidelity)
            }
            if !hadRow { built.newlyLabelled += 1 }
            if let top1 = try top1(of: new, set: set, version: Int(version), scratch: &decoded) { built.postings.append((top1, new.slot)) }
            built.rows.append(new)
        }
        return built
    }

    /// Input row `row`'s soft label encoded with the set's codec, its fidelity counted.
    func encodeSoft(_ input: ImportInput, row: Int, set: LabelSet, softRows: inout [Float], decoded: inout [Float], fidelity: inout FidelityAccumulator) throws -> [UInt8] {
        let classCount = store.schema.classes.count
        if let topRows = input.topRows {
            return try SoftEncoding.encode(topRows, row: row, codec: set.codec!, classCount: classCount, decoded: &decoded, fidelity: &fidelity)
        }
        return try softRows.withUnsafeMutableBufferPointer { all in
            try SoftEncoding.encode(UnsafeBufferPointer(rebasing: all[(row * classCount)..<((row + 1) * classCount)]),
                                    codec: set.codec!, decoded: &decoded, fidelity: &fidelity)
        }
    }

    /// Removes every label row and class posting of the samples being deleted (each with its
    /// slot), in every label set and version — labels of deleted samples are not kept in older
    /// versions either — rewriting each touched block and chunk once. Returns, per set, the
    /// version of each removed sample's first row, to lower the sets' counts.
    func purgeLabels(of samples: [(id: UInt64, slot: UInt64)], sets: [LabelSet]) throws -> [UInt32: [Int]] {
        var firstVersions: [UInt32: [Int]] = [:]
        for set in sets {
            var rows: [BlockVersion: Set<Int>] = [:]
            var postings: [ChunkVersion: Set<UInt64>] = [:]
            for (id, slot) in samples {
                let found = try rowsToPurge(of: id, slot: slot, set: set)
                for (version, top1) in found {
                    rows[BlockVersion(block: slot / LabelBlock.slots, version: version), default: []].insert(Int(slot % LabelBlock.slots))
                    switch top1 {
                    case .known(let c): postings[ChunkVersion(classIndex: UInt32(c), version: UInt32(version)), default: []].insert(slot)
                    case .none: break
                    case .unknown:
                        for c in 0..<UInt32(store.schema.classes.count) { postings[ChunkVersion(classIndex: c, version: UInt32(version)), default: []].insert(slot) }
                    }
                }
                if let first = found.first { firstVersions[set.id, default: []].append(first.version) }
            }
            for (key, offsets) in rows.sorted(by: { ($0.key.block, $0.key.version) < ($1.key.block, $1.key.version) }) {
                try deleteRows(set: set, version: key.version, block: key.block, offsets: offsets)
            }
            for (key, slots) in postings { try removePostings(set: set.id, classIndex: key.classIndex, version: key.version, slots: slots) }
        }
        return firstVersions
    }

    /// The versions of `set` with a row for sample `id` (in `slot`), oldest first, each with the
    /// row's top-1 class; a damaged row is purged all the same, without a posting to remove.
    private func rowsToPurge(of id: UInt64, slot: UInt64, set: LabelSet) throws -> [(version: Int, top1: PurgedTop1)] {
        let offset = Int(slot % LabelBlock.slots)
        let prefix = Array(LabelBlock.key(set: set.id, block: slot / LabelBlock.slots, version: 0).prefix(12))
        var found: [(version: Int, top1: PurgedTop1)] = []
        try walk(.labelBlocks, from: prefix) { key, value in
            guard key.prefix(12).elementsEqual(prefix) else { return false }
            guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .labelBlocks) }
            let version = Int(BigEndianKey.u32(key, at: 12))
            let view: LabelBlockView
            do { view = try LabelBlockView(key: key, bytes: value) } catch {
                throw contextualize(error, table: .labelBlocks, key: "\(set.name)@\(version) slot \(slot)")
            }
            guard let rank = view.rank(of: offset) else { return true }
            // A damaged row is purged all the same; its posting, whose class is unknown, is
            // looked for in every class of its version.
            if let label = (try? view.row(rank: rank, sample: id)).flatMap({ try? decodeLabel($0, version: version, sample: id, set: set) }) {
                found.append((version, label.top1.map { .known($0.classIndex) } ?? .none))
            } else {
                found.append((version, .unknown))
            }
            return true
        }
        return found
    }
}

/// What an import brings, checked: the values, their ids, each id's slot, and the soft rows in
/// the form they are encoded from.
struct ImportInput {
    var values: LabelValues
    var ids: [UInt64]
    var source: TaintLabel
    var slots: [UInt64] = []
    /// Dense input rows (`rows × C`), validated.
    var softRows: [Float] = []
    /// Compact input, validated, its leftover filled in.
    var topRows: TopKRows? = nil
}

/// The rows an import writes, their class postings, how many samples they label for the
/// first time, and the soft labels' fidelity.
struct BuiltRows {
    var rows: [WriteTransaction.NewRow] = []
    var postings: [(classIndex: UInt32, slot: UInt64)] = []
    var newlyLabelled = 0
    var fidelity: FidelityAccumulator
}

/// What a purge knows of a row's top-1 class: the class, that the row has none (multi-only), or
/// nothing (the row is damaged).
private enum PurgedTop1 {
    case known(Int)
    case none
    case unknown
}

/// A label block of one version, as purges group their work.
private struct BlockVersion: Hashable {
    let block: UInt64
    let version: Int
}

/// The postings of one class and version, as purges group their work.
private struct ChunkVersion: Hashable {
    let classIndex: UInt32
    let version: UInt32
}

/// Checks on label input before anything is written.
enum LabelValidation {
    /// Returns the soft rows to encode (normalised when asked), or [] for other kinds.
    static func check(_ values: LabelValues, rows: Int, classCount: Int, normalize: Bool) throws -> [Float] {
        switch values {
        case .hard(let classes):
            guard classes.count == rows else { throw LabelError.invalidLabel(row: min(classes.count, rows), reason: "\(classes.count) hard labels for \(rows) ids") }
            for (row, c) in classes.enumerated() where c < 0 || c >= classCount {
                throw LabelError.invalidLabel(row: row, reason: "class \(c) is out of range 0…\(classCount - 1)")
            }
            return []
        case .multi(let sets):
            guard sets.count == rows else { throw LabelError.invalidLabel(row: min(sets.count, rows), reason: "\(sets.count) multi-labels for \(rows) ids") }
            for (row, set) in sets.enumerated() {
                for c in set where c < 0 || c >= classCount {
                    throw LabelError.invalidLabel(row: row, reason: "class \(c) is out of range 0…\(classCount - 1)")
                }
            }
            return []
        case .topK:
            return []  // checked by TopKRows.validated
        case .soft(var p):
            guard p.count == rows * classCount else {
                throw LabelError.invalidLabel(row: 0, reason: "\(p.count) probabilities for \(rows) rows × \(classCount) classes")
            }
            for row in 0..<rows {
                var sum: Double = 0
                for j in 0..<classCount {
                    let v = p[row * classCount + j]
                    if v.isNaN { throw LabelError.invalidLabel(row: row, reason: "probability of class \(j) is NaN") }
                    if v < 0 || v.isInfinite { throw LabelError.invalidLabel(row: row, reason: "probability of class \(j) is \(v)") }
                    sum += Double(v)
                }
                if abs(sum - 1) > 1e-3 {
                    guard normalize, sum > 0 else {
                        throw LabelError.invalidLabel(row: row, reason: "probabilities sum to \(sum), not 1 (ask to normalize to rescale rows)")
                    }
                }
                // Rescale only when asked or visibly off: touching every row would copy the
                // whole (possibly gigabyte-sized) array for float rounding alone.
                if normalize && abs(sum - 1) > 1e-6 {
                    let scale = Float(1 / sum)
                    for j in 0..<classCount { p[row * classCount + j] *= scale }
                }
            }
            return p
        }
    }
}

/// Running fidelity figures over one import.
struct FidelityAccumulator {
    let classCount: Int
    var rows = 0
    /// Rows stored from compact input as given, and how many of them lost nothing.
    var compactRows = 0, exactRows = 0
    var klSum: Double = 0
    var klMax: Double = 0
    var agree = 0
    var bytes = 0
    var klBins = [Int](repeating: 0, count: Fidelity.klHistogramEdges.count + 1)

    init(classCount: Int) { self.classCount = classCount }

    mutating func add(original p: UnsafeBufferPointer<Float>, decoded q: UnsafeBufferPointer<Float>, bytes count: Int) {
        let kl = klDivergence(p, q)
        rows += 1
        klSum += kl
        klMax = max(klMax, kl)
        klBins[Fidelity.klBin(kl)] += 1
        bytes += count
        if argmax(p) == argmax(q) { agree += 1 }
    }

    /// ``add(original:decoded:bytes:)`` for a compact input row stored with its own classes:
    /// the original is its K entries plus the leftover spread evenly (as ``TopKRows/dense(_:classCount:)``
    /// builds it), the decoded row keeps the same classes, so every class outside them has one
    /// value in each and KL takes K + 1 logarithms instead of C. The same figures up to the order
    /// of the sum (a few ulps of a Double).
    mutating func addCompact(entries: [(Int, Float)], rest: Float, decoded q: UnsafeBufferPointer<Float>, bytes count: Int) {
        let c = q.count, k = entries.count
        var kl: Double = 0
        var best = (index: Int.max, value: -Float.infinity)
        for (cls, v) in entries {
            if v > 0 { kl += Double(v) * log(Double(v) / max(Double(q[cls]), 1e-30)) }
            if v > best.value || (v == best.value && cls < best.index) { best = (cls, v) }
        }
        if c > k {
            // The first class outside the kept ones stands for all C − K of them.
            var other = 0
            while entries.contains(where: { $0.0 == other }) { other += 1 }
            let p = rest / Float(c - k)
            if p > 0 { kl += Double(c - k) * Double(p) * log(Double(p) / max(Double(q[other]), 1e-30)) }
            if p > best.value || (p == best.value && other < best.index) { best = (other, p) }
        }
        // The decoded row's argmax the same way: every class outside the kept ones has q[other].
        var top = (index: Int.max, value: -Float.infinity)
        for (cls, _) in entries where q[cls] > top.value || (q[cls] == top.value && cls < top.index) { top = (cls, q[cls]) }
        if c > k, let other = (0..<c).first(where: { cls in !entries.contains { $0.0 == cls } }),
           q[other] > top.value || (q[other] == top.value && other < top.index) {
            top = (other, q[other])
        }
        kl = max(kl, 0)
        rows += 1
        klSum += kl
        klMax = max(klMax, kl)
        klBins[Fidelity.klBin(kl)] += 1
        bytes += count
        if best.index == top.index { agree += 1 }
    }

    func result() -> Fidelity {
        let n = Double(max(rows, 1))
        let perLabel = Double(bytes) / n
        return Fidelity(meanKL: klSum / n, maxKL: klMax, top1Agreement: Double(agree) / n,
                        bytesPerLabel: perLabel, ratioToDenseF32: perLabel / Double(4 * classCount),
                        exact: compactRows == rows && rows > 0 ? exactRows == rows : nil, klHistogram: klBins)
    }
}

/// How an import turns one row's soft label into the codec's bytes, measuring what it cost.
enum SoftEncoding {
    /// A dense row: encode, decode, and measure KL and top-1 against the row.
    static func encode(_ p: UnsafeBufferPointer<Float>, codec: SoftLabelCodec, decoded: inout [Float], fidelity: inout FidelityAccumulator) throws -> [UInt8] {
        var bytes: [UInt8] = []
        codec.encode(p, into: &bytes)
        try bytes.withUnsafeBytes { raw in
            try decoded.withUnsafeMutableBufferPointer { out in
                try codec.decode(raw, into: out)
                fidelity.add(original: p, decoded: UnsafeBufferPointer(out), bytes: raw.count)
            }
        }
        return bytes
    }

    /// A compact row: stored as given when the codec is `topk:K:f16` with the input's K (no
    /// expansion to C floats); otherwise expanded and encoded as a dense row.
    static func encode(_ rows: TopKRows, row r: Int, codec: SoftLabelCodec, classCount c: Int, decoded: inout [Float], fidelity: inout FidelityAccumulator) throws -> [UInt8] {
        guard case .topKF16(let k) = codec, k == rows.k else {
            let dense = rows.dense(r, classCount: c)
            return try dense.withUnsafeBufferPointer { try encode($0, codec: codec, decoded: &decoded, fidelity: &fidelity) }
        }
        let (entries, rest) = rows.row(r)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(2 + 4 * k)
        func append16(_ v: UInt16) { bytes.append(UInt8(v & 0xFF)); bytes.append(UInt8(v >> 8)) }
        append16(Float16(rest).bitPattern)
        var exact = Float(Float16(rest)) == rest
        for (cls, v) in entries {
            append16(UInt16(cls))
            append16(Float16(v).bitPattern)
            exact = exact && Float(Float16(v)) == v
        }
        fidelity.compactRows += 1
        if exact {
            // Nothing was rounded: the stored row is the input row (KL 0, same top-1).
            fidelity.exactRows += 1
            fidelity.klBins[0] += 1
            fidelity.rows += 1
            fidelity.bytes += bytes.count
            fidelity.agree += 1
            return bytes
        }
        try bytes.withUnsafeBytes { raw in
            try decoded.withUnsafeMutableBufferPointer { out in
                try codec.decode(raw, into: out)
                fidelity.addCompact(entries: entries, rest: rest, decoded: UnsafeBufferPointer(out), bytes: raw.count)
            }
        }
        return bytes
    }
}

/// The index of the largest value, ties by the smaller index.
func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
    // (0 for fewer than two values: a store of samples only has no classes.)
    guard values.count > 1 else { return 0 }
    var best = 0
    for i in 1..<values.count where values[i] > values[best] { best = i }
    return best
}
