import Foundation

/// What ``Transaction/checkProjector(_:)`` found: the projector's labels recomputed for every
/// fitted sample and compared with the teacher's stored soft labels.
public struct ProjectorCheck: Sendable, Equatable {
    /// Fitted samples checked: the source version's soft labels the clearance sees whose
    /// regenerated label the bound covers (status `regenerated` or `corrected`).
    public var checked = 0
    /// Of those, the ones read through a stored correction.
    public var corrected = 0
    /// Source rows whose embedding changed after the fit (or whose base head changed): no bound
    /// is claimed for them, so they are counted, not checked.
    public var stale = 0
    /// Source rows the fit could not have used (their label does not flow to the projector's).
    public var unfitted = 0
    /// Mean KL(teacher ‖ regenerated) over the checked samples, in nats.
    public var meanKL = 0.0
    /// The largest KL, and the sample it was found on (nil when nothing was checked).
    public var maxKL = 0.0
    public var maxKLSample: UInt64?
    /// Checked samples whose regenerated top-1 class differs from the teacher's.
    public var top1Misses = 0
    /// The bound the version claims: KL ≤ `boundMaxKL` (nil: no bound) and, with
    /// `requireTop1`, the teacher's top-1 class.
    public var boundMaxKL: Double?
    public var requireTop1 = false
    /// Checked samples that break the claimed bound, ascending (empty when it holds or none is claimed).
    public var violations: [UInt64] = []

    /// Slack on the KL bound, in nats: regenerating in batches of another size may round the
    /// matrix product differently from the fit, by far less than this.
    public static let tolerance = 1e-6

    /// True when a bound is claimed and every checked sample meets it.
    public var boundHolds: Bool { boundMaxKL != nil && violations.isEmpty }
}

extension Transaction {
    /// Recomputes a projector version's labels for every fitted sample the clearance sees and
    /// compares them with the teacher's stored soft labels (per sample, the row the fit read),
    /// as the fit's bound promises: KL(p ‖ q)
    /// ≤ the version's max KL (plus ``ProjectorCheck/tolerance``), and the same top-1 class when
    /// it was fitted with `requireTop1`.
    /// Samples are regenerated in batches (one matrix product each), in ascending id order.
    ///
    /// - Throws: ``ProjectorError``, ``LabelError`` when the projector or its source label set is
    ///   unknown (a dropped source leaves nothing to check against).
    public func checkProjector(_ reference: ProjectorReference) throws -> ProjectorCheck {
        let loaded = try load(reference)
        var tally = ProjectorCheckTally(loaded.version)
        try forEachCheckedSample(loaded) { tally.add($0) }
        return tally.result()
    }

    /// Each visible sample of the version's source set with a soft label the fit could read, in
    /// ascending id order: its regenerated label's status and, when the bound covers it, its KL
    /// and whether its top-1 class is the teacher's. Regenerated in batches of 1,024.
    ///
    /// - Throws: ``LabelError/unknownLabelSet(_:)`` when the source set was dropped.
    func forEachCheckedSample(_ loaded: LoadedProjector, _ body: (CheckedSample) throws -> Void) throws {
        let c = loaded.model.classes
        var batch: [(id: UInt64, teacher: [Float])] = []
        func flush() throws {
            let regenerated = try regenerate(batch.map(\.id), with: loaded)
            for (row, label) in zip(batch, regenerated) {
                guard label.status == .regenerated || label.status == .corrected else {
                    try body(CheckedSample(id: row.id, status: label.status, kl: 0, sameTop: true))
                    continue
                }
                let (kl, sameTop) = row.teacher.withUnsafeBufferPointer { p in
                    label.probabilities.withUnsafeBufferPointer { q in (klDivergence(p, q), argmax(p) == argmax(q)) }
                }
                try body(CheckedSample(id: row.id, status: label.status, kl: kl, sameTop: sameTop))
            }
            batch.removeAll(keepingCapacity: true)
        }
        guard let source = loaded.sourceSet else { throw LabelError.unknownLabelSet(loaded.version.sourceSet) }
        // Each sample's teacher label is the row the fit read — the newest at or before the
        // source version whose label flows to the projector's — not the newest this clearance
        // admits, which may be a row the fit's clearance did not see.
        try forEach(.samples) { id, bytes in
            let record = try decodeSampleRecord(id: id, bytes)
            guard try admits(labelID: record.taintLabel) else { return true }
            let sampleTaint = try taintLabel(id: record.taintLabel, sample: id)
            var teacher: [Float]? = nil
            try forEachRow(of: id, slot: record.slot, set: source, atOrBefore: loaded.version.sourceVersion) { rowVersion, row in
                guard sampleTaint.join(source.versions[rowVersion - 1].sourceLabel).flows(to: loaded.version.taintLabel) else { return true }
                if row.soft != nil { teacher = try decodeLabel(row, version: rowVersion, sample: id, set: source).soft }
                return false
            }
            guard let teacher, teacher.count == c else { return true }
            batch.append((id, teacher))
            if batch.count == 1024 { try flush() }
            return true
        }
        try flush()
    }
}

/// One sample as a projector check saw it.
struct CheckedSample: Sendable {
    var id: UInt64
    var status: RegenerationStatus
    /// KL(teacher ‖ read label) (0 when the bound does not cover the sample).
    var kl: Double
    /// Whether the read label's top-1 class is the teacher's.
    var sameTop: Bool
}

/// A projector check's figures, summed over the samples in id order (a store's, or a corpus's
/// shards merged), so the same samples give the same figures however they are stored.
struct ProjectorCheckTally {
    private var check: ProjectorCheck
    private var klSum = 0.0

    init(_ version: ProjectorVersion) { check = ProjectorCheck(boundMaxKL: version.maxKL, requireTop1: version.requireTop1) }

    mutating func add(_ sample: CheckedSample) {
        switch sample.status {
        case .stale: check.stale += 1; return
        case .unfitted: check.unfitted += 1; return
        case .corrected: check.corrected += 1
        case .regenerated: break
        }
        check.checked += 1
        klSum += sample.kl
        if check.maxKLSample == nil || sample.kl > check.maxKL { (check.maxKL, check.maxKLSample) = (sample.kl, sample.id) }
        if !sample.sameTop { check.top1Misses += 1 }
        if let bound = check.boundMaxKL, sample.kl > bound + ProjectorCheck.tolerance || (check.requireTop1 && !sample.sameTop) {
            check.violations.append(sample.id)
        }
    }

    func result() -> ProjectorCheck {
        var result = check
        result.meanKL = check.checked > 0 ? klSum / Double(check.checked) : 0
        return result
    }
}
