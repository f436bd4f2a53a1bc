import Foundation

/// How a batch read returns soft labels.
public enum SoftLabelForm: Sendable, Equatable {
    /// Not at all.
    case none
    /// Every probability, `C` floats per row.
    case dense
    /// The row's `k` most probable classes as stored (most probable first), their decoded
    /// probabilities, and the leftover mass — without expanding the row to `C` floats. Rows that
    /// keep fewer than `k` classes (adaptive) are padded with class −1 and probability 0; nil
    /// takes K from the set's `topk:K:*` codec.
    case compact(k: Int?)
}

/// What one ``Transaction/readBatch(_:_:into:arena:)`` call reads.
public struct BatchRequest: Sendable {
    /// Embeddings as `d` floats per row.
    public var embeddings = true
    /// Metadata as its stored JSON bytes (parse them only when needed).
    public var metadata = false
    /// Payload bytes.
    public var payloads = false
    /// Each row's taint label (an index into ``BatchArena/taintLabels``).
    public var taints = false
    /// Label sets whose labels to read, each at its version (the latest when none is named).
    public var labels: [LabelSetReference] = []
    /// The form of the soft labels of `labels`.
    public var soft: SoftLabelForm = .compact(k: nil)
    /// Projectors whose labels to regenerate (dense, `C` floats per row, with a status).
    public var regenerate: [ProjectorReference] = []

    /// A request for embeddings only; set the other members to add columns.
    public init() {}
}

/// The caller's buffers a batch read fills, row `i` for the `i`-th id given. Each pointer that
/// is nil is not written; a column the request asks for needs its pointer. Rows of ids that are
/// absent or hidden are zero, their labels −1.
public struct BatchBuffers {
    /// `n` bytes: 1 when the sample is stored and visible, else 0.
    public var found: UnsafeMutablePointer<UInt8>?
    /// `n × d` floats.
    public var embeddings: UnsafeMutablePointer<Float>?
    /// `n + 1` offsets into ``BatchArena/metadata``: row `i` is `[offsets[i], offsets[i+1])`.
    public var metadataOffsets: UnsafeMutablePointer<UInt64>?
    /// `n + 1` offsets into ``BatchArena/payloads``.
    public var payloadOffsets: UnsafeMutablePointer<UInt64>?
    /// `n` indices into ``BatchArena/taintLabels`` (−1 for absent rows).
    public var taints: UnsafeMutablePointer<Int32>?
    /// One entry per requested label set, in the request's order.
    public var labels: [LabelBuffers] = []
    /// One entry per requested projector, in the request's order.
    public var regenerated: [RegeneratedBuffers] = []

    /// Buffers with every pointer nil.
    public init() {}
}

/// Where the labels of one label set go.
public struct LabelBuffers {
    /// `n`: the version of the row read (0 when the sample has no label in the set).
    public var version: UnsafeMutablePointer<Int32>?
    /// `n`: the hard label (−1 when none).
    public var hard: UnsafeMutablePointer<Int32>?
    /// `n × C` (dense form): zero rows where there is no soft label.
    public var dense: UnsafeMutablePointer<Float>?
    /// `n × k` (compact form): classes, −1 past a row's last.
    public var topClasses: UnsafeMutablePointer<Int32>?
    /// `n × k` (compact form): probabilities, 0 past a row's last.
    public var topProbabilities: UnsafeMutablePointer<Float>?
    /// `n` (compact form): the mass outside the row's classes (0 when there is no soft label).
    public var leftover: UnsafeMutablePointer<Float>?

    /// Buffers with every pointer nil.
    public init() {}
}

/// Where one projector's regenerated labels go.
public struct RegeneratedBuffers {
    /// `n × C` probabilities.
    public var probabilities: UnsafeMutablePointer<Float>?
    /// `n`: ``RegenerationStatus/code`` (0 for absent rows).
    public var status: UnsafeMutablePointer<UInt8>?

    /// Buffers with every pointer nil.
    public init() {}
}

/// The variable-size columns of a batch read, owned by the library. Reused across calls (its
/// capacity stays), so a loop that reads many batches does not allocate for each.
public final class BatchArena {
    /// Metadata JSON bytes of every row, in the caller's order.
    public private(set) var metadata: [UInt8] = []
    /// Payload bytes of every row, in the caller's order.
    public private(set) var payloads: [UInt8] = []
    /// The distinct taint labels the rows carry.
    public private(set) var taintLabels: [TaintLabel] = []
    private var taintIndex: [TaintLabel: Int32] = [:]

    /// An empty arena.
    public init() {}

    func reset() {
        metadata.removeAll(keepingCapacity: true)
        payloads.removeAll(keepingCapacity: true)
        taintLabels.removeAll(keepingCapacity: true)
        taintIndex.removeAll(keepingCapacity: true)
    }

    func index(of label: TaintLabel) -> Int32 {
        if let known = taintIndex[label] { return known }
        let index = Int32(taintLabels.count)
        taintLabels.append(label)
        taintIndex[label] = index
        return index
    }

    fileprivate func appendMetadata(_ bytes: UnsafeRawBufferPointer) { metadata.append(contentsOf: bytes) }
    fileprivate func appendPayload(_ bytes: UnsafeRawBufferPointer) { payloads.append(contentsOf: bytes) }
}

extension RegenerationStatus {
    /// The status as one byte in batch reads and the C API: 1 regenerated, 2 corrected,
    /// 3 stale, 4 unfitted (0 is left for absent rows).
    public var code: UInt8 {
        switch self {
        case .regenerated: 1
        case .corrected: 2
        case .stale: 3
        case .unfitted: 4
        }
    }
}

extension Transaction {
    /// Reads the columns `request` names for `ids` (any order, repeats allowed) into the caller's
    /// `buffers`, row `i` for `ids[i]`, in this one snapshot. Samples are visited in ascending id
    /// order (LMDB's pages in order), whatever the order given.
    ///
    /// Absent ids, and ids the clearance does not admit, are not errors: their `found` byte is 0
    /// (so a caller cannot tell the two apart, as with every read).
    ///
    /// - Returns: the number of rows found.
    /// - Throws: ``LabelError/unknownLabelSet(_:)`` and the like for a bad request (before any
    ///   buffer is written), a checksum or decoding error for damaged bytes.
    @discardableResult
    public func readBatch(_ ids: UnsafeBufferPointer<UInt64>, _ request: BatchRequest, into buffers: BatchBuffers, arena: BatchArena) throws -> Int {
        let plan = try BatchPlan(request: request, buffers: buffers, transaction: self)
        arena.reset()
        let n = ids.count
        let order = (0..<n).sorted { ids[$0] < ids[$1] || (ids[$0] == ids[$1] && $0 < $1) }
        var borrowed = [(metadata: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer)?](repeating: nil, count: n)
        var found = 0
        for position in order {
            let id = ids[position]
            let hit = try withValue(.samples, key: id) { bytes -> Bool in
                guard let bytes else { return false }
                let record = try decodeSampleRecord(id: id, bytes)
                guard try admits(labelID: record.taintLabel) else { return false }
                try withCheckedSample(id: id, record: record) { view in
                    if let out = buffers.embeddings {
                        ElementEncoding.load(view.embeddingBytes, count: plan.dimension, as: view.elementType, into: out + position * plan.dimension)
                    }
                    if let taints = buffers.taints { taints[position] = arena.index(of: view.taint) }
                    // LMDB's pages stay mapped until the transaction ends: the bytes are copied
                    // out in the caller's order after the walk.
                    borrowed[position] = (view.metadataJSON, view.payload)
                }
                for (index, set) in plan.labelSets.enumerated() {
                    try readLabel(of: id, slot: record.slot, sampleTaint: record.taintLabel, set: set, plan: plan, labelIndex: index, position: position, into: buffers.labels[index])
                }
                return true
            }
            buffers.found?[position] = hit ? 1 : 0
            if hit { found += 1 } else { plan.clear(row: position, buffers: buffers) }
        }
        copyVariableColumns(borrowed, buffers: buffers, arena: arena)
        for (index, loaded) in plan.projectors.enumerated() {
            try regenerate(ids, found: borrowed.map { $0 != nil }, with: loaded, into: buffers.regenerated[index])
        }
        return found
    }

    /// Copies the borrowed metadata and payload bytes into the arena in the caller's order.
    private func copyVariableColumns(_ borrowed: [(metadata: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer)?], buffers: BatchBuffers, arena: BatchArena) {
        if let offsets = buffers.metadataOffsets {
            offsets[0] = 0
            for (i, row) in borrowed.enumerated() {
                if let row { arena.appendMetadata(row.metadata) }
                offsets[i + 1] = UInt64(arena.metadata.count)
            }
        }
        if let offsets = buffers.payloadOffsets {
            offsets[0] = 0
            for (i, row) in borrowed.enumerated() {
                if let row { arena.appendPayload(row.payload) }
                offsets[i + 1] = UInt64(arena.payloads.count)
            }
        }
    }

    /// Reads sample `id`'s label row in one set into its buffers (the newest row at or before the
    /// plan's version that the clearance admits; −1 and zeros when there is none).
    private func readLabel(
        of id: UInt64, slot: UInt64, sampleTaint: UInt32, set: LabelSet, plan: BatchPlan, labelIndex: Int, position: Int, into out: LabelBuffers
    ) throws {
        let version = plan.labelVersions[labelIndex]
        try withVisibleRow(of: id, slot: slot, sampleTaint: sampleTaint, set: set, version: version) { found in
            plan.clearLabel(labelIndex, row: position, out)
            guard let found else { return }
            do {
                out.version?[position] = Int32(found.version)
                if let hard = found.row.hard {
                    guard Int(hard) < plan.classCount else { throw RecordDecodingError(detail: "hard label \(hard) ≥ \(plan.classCount) classes") }
                    out.hard?[position] = Int32(hard)
                }
                guard let soft = found.row.soft else { return }
                guard let codec = set.codec else { throw RecordDecodingError(detail: "soft label in a set without a codec") }
                if let dense = out.dense {
                    try codec.decode(soft, into: UnsafeMutableBufferPointer(start: dense + position * plan.classCount, count: plan.classCount))
                }
                if let k = plan.compactWidths[labelIndex], let classes = out.topClasses, let probabilities = out.topProbabilities {
                    let rest = try codec.decodeCompact(soft, classCount: plan.classCount, k: k, classes: classes + position * k, probabilities: probabilities + position * k)
                    out.leftover?[position] = rest
                }
            } catch {
                throw contextualize(error, table: try labelRowsTable, key: "\(set.name)@\(found.version) sample \(id)")
            }
        }
    }

    /// Regenerates the found rows' labels with one projector and scatters them into `out`.
    private func regenerate(_ ids: UnsafeBufferPointer<UInt64>, found: [Bool], with loaded: LoadedProjector, into out: RegeneratedBuffers) throws {
        let c = loaded.model.classes
        let positions = found.indices.filter { found[$0] }
        let results = try regenerate(positions.map { ids[$0] }, with: loaded)
        if let probabilities = out.probabilities { probabilities.update(repeating: 0, count: ids.count * c) }
        out.status?.update(repeating: 0, count: ids.count)
        for (result, position) in zip(results, positions) {
            if let probabilities = out.probabilities {
                result.probabilities.withUnsafeBufferPointer { (probabilities + position * c).update(from: $0.baseAddress!, count: c) }
            }
            out.status?[position] = result.status.code
        }
    }
}

/// A request resolved against the store once per batch: the label sets and their versions, the
/// compact widths, the loaded projectors, and whether every column asked for has a buffer.
struct BatchPlan {
    let dimension: Int
    let classCount: Int
    let labelSets: [LabelSet]
    let labelVersions: [Int]
    /// Per label set, K of the compact form (nil when the form is not compact).
    let compactWidths: [Int?]
    let projectors: [LoadedProjector]
    let request: BatchRequest

    init(request: BatchRequest, buffers: BatchBuffers, transaction tx: Transaction) throws {
        self.request = request
        dimension = tx.store.schema.dimension
        classCount = tx.store.schema.classes.count
        // (A Bool, not the pointer as Any: boxing each pointer would allocate on every call.)
        func need(_ present: Bool, _ column: @autoclosure () -> String) throws {
            guard present else { throw BatchPlan.badRequest("the \(column()) column was asked for without a buffer") }
        }
        if request.embeddings { try need(buffers.embeddings != nil, "embeddings") }
        if request.metadata { try need(buffers.metadataOffsets != nil, "metadata offsets") }
        if request.payloads { try need(buffers.payloadOffsets != nil, "payload offsets") }
        if request.taints { try need(buffers.taints != nil, "taint") }
        guard buffers.labels.count == request.labels.count, buffers.regenerated.count == request.regenerate.count else {
            throw BatchPlan.badRequest("\(request.labels.count) label sets and \(request.regenerate.count) projectors asked for, buffers for \(buffers.labels.count) and \(buffers.regenerated.count)")
        }
        var sets: [LabelSet] = [], versions: [Int] = [], widths: [Int?] = []
        for (reference, out) in zip(request.labels, buffers.labels) {
            let (set, version) = try tx.resolve(reference)
            try tx.requirePerSample(set, for: "the batch read")
            sets.append(set)
            versions.append(version)
            // A set without soft labels (no codec) needs no soft buffers; it fills those it is given.
            let hasSoft = set.codec != nil
            switch request.soft {
            case .none: widths.append(nil)
            case .dense where !hasSoft, .compact where !hasSoft && (out.topClasses == nil || out.topProbabilities == nil):
                widths.append(nil)
            case .dense:
                try need(out.dense != nil, "dense soft labels of '\(set.name)'")
                widths.append(nil)
            case .compact(let k):
                let width = try BatchPlan.compactWidth(k, set: set, classCount: classCount)
                try need(out.topClasses != nil, "top classes of '\(set.name)'")
                try need(out.topProbabilities != nil, "top probabilities of '\(set.name)'")
                widths.append(width)
            }
        }
        labelSets = sets
        labelVersions = versions
        compactWidths = widths
        projectors = try request.regenerate.map { try tx.load($0) }
        for (reference, out) in zip(request.regenerate, buffers.regenerated) {
            try need(out.probabilities != nil, "regenerated labels of '\(reference.name)'")
        }
    }

    /// The error for a request that cannot be served, thrown before any buffer is written.
    static func badRequest(_ reason: String) -> InputError { InputError(file: "batch read", reason: reason) }

    /// K of the compact form for `set`: the one asked for, else the set's top-K codec's.
    static func compactWidth(_ k: Int?, set: LabelSet, classCount: Int) throws -> Int {
        if let k {
            guard k >= 1, k <= classCount else { throw BatchPlan.badRequest("compact soft labels: K = \(k), expected 1…\(classCount)") }
            return k
        }
        switch set.codec {
        case .topKF16(let k)?, .topKU8(let k)?: return k
        case let codec?: throw BatchPlan.badRequest("compact soft labels of '\(set.name)' (codec \(codec)) need K: the codec keeps no fixed number of classes")
        case nil: return 1
        }
    }

    /// Zeroes an absent row's columns (labels −1).
    func clear(row: Int, buffers: BatchBuffers) {
        buffers.embeddings?.advanced(by: row * dimension).update(repeating: 0, count: dimension)
        buffers.taints?[row] = -1
        for (index, out) in buffers.labels.enumerated() { clearLabel(index, row: row, out) }
    }

    /// Sets one label set's columns of a row to "no label".
    func clearLabel(_ index: Int, row: Int, _ out: LabelBuffers) {
        out.version?[row] = 0
        out.hard?[row] = -1
        out.dense?.advanced(by: row * classCount).update(repeating: 0, count: classCount)
        if let k = compactWidths[index] {
            out.topClasses?.advanced(by: row * k).update(repeating: -1, count: k)
            out.topProbabilities?.advanced(by: row * k).update(repeating: 0, count: k)
        }
        out.leftover?[row] = 0
    }
}
