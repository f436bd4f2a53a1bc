/// What one ``Transaction/readViews(_:from:epoch:soft:)`` call read from a per-view label set,
/// column by column: sample `i`'s views are rows `offsets[i] ..< offsets[i + 1]` of every
/// per-view column, in ascending view number.
public struct ViewBatch: Sendable, Equatable {
    /// The store's class count C.
    public var classCount: Int
    /// K of the compact soft form (0 when the form is not compact or the set has no soft labels).
    public var k: Int
    /// n + 1 offsets into the per-view columns.
    public var offsets: [Int] = [0]
    /// Per sample: the version of the row read; 0 when the sample has none (or is absent, or
    /// hidden by the clearance).
    public var versions: [Int32] = []
    /// Per view: the view number.
    public var views: [UInt32] = []
    /// Per view: the crop box, 4 floats `[x0, y0, x1, y1]`.
    public var crops: [Float] = []
    /// Per view: 1 when flipped.
    public var flips: [UInt8] = []
    /// Per view: the epoch.
    public var epochs: [UInt16] = []
    /// Per view: the augmentation seed.
    public var seeds: [UInt32] = []
    /// Per view: the extra parameters' JSON text, or nil.
    public var extras: [String?] = []
    /// Per view: the hard label, −1 when the rows carry none.
    public var hard: [Int32] = []
    /// Per view, dense form: C probabilities (zeros when there is no soft label).
    public var dense: [Float] = []
    /// Per view, compact form: K classes (−1 past a row's last).
    public var topClasses: [Int32] = []
    /// Per view, compact form: K probabilities.
    public var topProbabilities: [Float] = []
    /// Per view, compact form: the mass outside the row's K classes.
    public var leftover: [Float] = []

    /// The number of views read.
    public var viewCount: Int { views.count }
}

extension Transaction {
    /// Reads the views of `ids` in the referenced version of a per-view set, with their labels:
    /// every view of each sample, or, with `epoch`, the one view training epoch E replays — the
    /// view at index E mod n of the sample's n views in ascending view number. Each
    /// sample's views come from its newest row at or before the version that the clearance
    /// admits, as ``label(of:set:version:)`` reads it; an absent or hidden sample, or one
    /// without a row, reads as version 0 and no views.
    ///
    /// - Throws: ``LabelError/viewLayout(set:perView:)`` for a per-sample set; ``InputError``
    ///   for a compact K the codec cannot give; ``StoreError`` for damaged rows.
    public func readViews(_ ids: [UInt64], from reference: LabelSetReference, epoch: Int? = nil, soft form: SoftLabelForm = .compact(k: nil)) throws -> ViewBatch {
        let (set, version) = try resolveViews(reference)
        if let epoch, epoch < 0 { throw BatchPlan.badRequest("epoch \(epoch) must be ≥ 0") }
        let classCount = store.schema.classes.count
        var batch = ViewBatch(classCount: classCount, k: 0)
        if case .compact(let k) = form, set.codec != nil { batch.k = try BatchPlan.compactWidth(k, set: set, classCount: classCount) }
        batch.versions.reserveCapacity(ids.count)
        for id in ids {
            defer { batch.offsets.append(batch.views.count) }
            guard let sample = try visibleSample(id) else { batch.versions.append(0); continue }
            try withVisibleRow(of: id, slot: sample.slot, sampleTaint: sample.taint, set: set, version: version) { found in
                batch.versions.append(Int32(found?.version ?? 0))
                guard let found else { return }
                do {
                    try found.row.checkLayout(perView: true)
                    try batch.append(found.row.views!, codec: set.codec, form: form, epoch: epoch)
                } catch {
                    throw contextualize(error, table: try labelRowsTable, key: "\(set.name)@\(found.version) sample \(id)")
                }
            }
        }
        return batch
    }
}

extension ViewBatch {
    /// Appends a row's views (all, or the one epoch `epoch` replays), every field checked.
    mutating func append(_ section: ViewSection, codec: SoftLabelCodec?, form: SoftLabelForm, epoch: Int?) throws {
        let layout = try section.parse(codec: codec, classCount: classCount)
        if let epoch, epoch < 0 { throw RecordDecodingError(detail: "epoch \(epoch) is negative") }
        let indices = epoch.map { $0 % layout.count..<($0 % layout.count + 1) } ?? 0..<layout.count
        for i in indices {
            let parameters = try section.parameters(layout, i)
            views.append(UInt32(parameters.view))
            for lane in 0..<4 { crops.append(parameters.crop[lane]) }
            flips.append(parameters.flip ? 1 : 0)
            epochs.append(UInt16(parameters.epoch))
            seeds.append(UInt32(parameters.seed))
            extras.append(parameters.extra)
            hard.append(try section.hard(layout, i, classCount: classCount).map { Int32($0) } ?? -1)
            try appendSoft(section.soft(layout, i), codec: codec, form: form)
        }
    }

    /// Appends one view's soft label in the requested form (zeros when it has none).
    private mutating func appendSoft(_ soft: UnsafeRawBufferPointer?, codec: SoftLabelCodec?, form: SoftLabelForm) throws {
        switch form {
        case .none: return
        case .dense:
            let start = dense.count
            dense.append(contentsOf: repeatElement(0, count: classCount))
            if let soft, let codec {
                try dense.withUnsafeMutableBufferPointer { try codec.decode(soft, into: UnsafeMutableBufferPointer(rebasing: $0[start..<(start + classCount)])) }
            }
        case .compact:
            guard k > 0 else { return }
            let start = topClasses.count
            topClasses.append(contentsOf: repeatElement(-1, count: k))
            topProbabilities.append(contentsOf: repeatElement(0, count: k))
            guard let soft, let codec else { leftover.append(0); return }
            let rest = try topClasses.withUnsafeMutableBufferPointer { classes in
                try topProbabilities.withUnsafeMutableBufferPointer { probabilities in
                    try codec.decodeCompact(soft, classCount: classCount, k: k, classes: classes.baseAddress! + start, probabilities: probabilities.baseAddress! + start)
                }
            }
            leftover.append(rest)
        }
    }
}
