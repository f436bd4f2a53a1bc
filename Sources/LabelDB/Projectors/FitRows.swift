import Foundation

/// The rows a projector is fitted on: each row's embedding (d floats) and teacher distribution
/// (C floats), read by row index into the fitter's buffers.
///
/// The fitter only ever asks for chunks and minibatches, so a source may read them from the
/// store on demand: the rows × classes of the teacher are never copied into memory (at ImageNet
/// scale that is 5 GB as floats); what stays is a few index arrays, about 40 bytes a row.
protocol FitRows {
    /// The number of rows; indices run over `0..<count`.
    var count: Int { get }
    /// The width of an embedding.
    var dimension: Int { get }
    /// The width of a teacher distribution.
    var classes: Int { get }
    /// Copies the embeddings and teacher distributions of `rows`, in that order, to `embeddings`
    /// (`rows.count × dimension`) and `teacher` (`rows.count × classes`).
    func load(_ rows: ArraySlice<Int>, embeddings: UnsafeMutablePointer<Float>, teacher: UnsafeMutablePointer<Float>) throws
    /// How many parts the rows are read from (a corpus's shards): sums over rows are taken per
    /// part, on a thread each, and then added in part order (a map and a reduce).
    var partCount: Int { get }
    /// The part row `row` is read from, in `0..<partCount`.
    func part(of row: Int) -> Int

    // The passes the fitter takes over one part's rows (each a map whose results it reduces).
    // The defaults read the rows through ``load(_:embeddings:teacher:)``; a source whose parts
    // live elsewhere runs them where the part is (``RemoteShardRows``).

    /// Σx and Σy (centred log-probabilities) over `rows`, all of one part.
    func partSums(_ rows: [Int]) throws -> (x: [Double], y: [Double])
    /// XcᵀXc and XcᵀYc over `rows`, all of one part, centred by the given means.
    func partCentredProducts(_ rows: [Int], meanX: [Float], meanY: [Float]) throws -> (xx: [Float], xy: [Float])
    /// Σ KL(teacher ‖ regenerated), the largest KL and the top-1 agreements over `rows`, all of one part.
    func partEvaluation(_ model: ProjectorModel, rows: [Int], head: [Float]?) throws -> PartEvaluation
    /// The rows among `rows` (all of one part) whose regenerated label breaks the bound, with
    /// their corrections, in the order of `rows`.
    func partCorrections(_ model: ProjectorModel, rows: [Int], head: [Float]?, maxKL: Double, requireTop1: Bool) throws -> [FoundCorrection]
}

/// One part's evaluation figures (sums, so parts add).
struct PartEvaluation: Equatable {
    var sum = 0.0
    var worst = 0.0
    var agree = 0
}

/// A row whose regenerated label breaks a bound, and its correction.
struct FoundCorrection: Equatable {
    var row: Int
    var codec: UInt8
    var bytes: [UInt8]
}

extension FitRows {
    /// One part: the default.
    var partCount: Int { 1 }
    /// The only part.
    func part(of row: Int) -> Int { 0 }

    func partSums(_ rows: [Int]) throws -> (x: [Double], y: [Double]) { try ClosedFormSums.sums(self, rows: rows) }

    func partCentredProducts(_ rows: [Int], meanX: [Float], meanY: [Float]) throws -> (xx: [Float], xy: [Float]) {
        try ClosedFormSums.centredProducts(self, rows: rows, meanX: meanX, meanY: meanY)
    }

    func partEvaluation(_ model: ProjectorModel, rows: [Int], head: [Float]?) throws -> PartEvaluation {
        var out = PartEvaluation()
        try ProjectorFitter.forEachRegenerated(model, self, rows: rows, head: head) { _, p, q in
            let kl = klDivergence(p, q)
            out.sum += kl
            out.worst = max(out.worst, kl.isFinite ? kl : .infinity)
            if argmax(p) == argmax(q) { out.agree += 1 }
        }
        return out
    }

    func partCorrections(_ model: ProjectorModel, rows: [Int], head: [Float]?, maxKL: Double, requireTop1: Bool) throws -> [FoundCorrection] {
        var found: [FoundCorrection] = []
        try ProjectorFitter.forEachRegenerated(model, self, rows: rows, head: head) { position, p, q in
            if klDivergence(p, q) > maxKL || (requireTop1 && argmax(p) != argmax(q)) {
                let (codec, bytes) = CorrectionCodec.encode(p, maxKL: maxKL, requireTop1: requireTop1)
                found.append(FoundCorrection(row: rows[position], codec: codec, bytes: bytes))
            }
        }
        return found
    }

    /// `rows` grouped by part, each group in the order given, empty groups left out. With one
    /// part it is `[rows]`, so a store's sums are taken exactly as a single pass takes them.
    func partitioned(_ rows: [Int]) -> [[Int]] {
        guard partCount > 1 else { return [rows] }
        var groups = [[Int]](repeating: [], count: partCount)
        for row in rows { groups[part(of: row)].append(row) }
        return groups.filter { !$0.isEmpty }
    }
}

/// Rows held in two row-major matrices (the public ``ProjectorFitter/fit(embeddings:teacher:rows:dimension:classes:head:options:progress:)``).
struct MatrixFitRows: FitRows {
    let x: [Float]
    let p: [Float]
    let count: Int
    let dimension: Int
    let classes: Int

    func load(_ rows: ArraySlice<Int>, embeddings: UnsafeMutablePointer<Float>, teacher: UnsafeMutablePointer<Float>) throws {
        x.withUnsafeBufferPointer { MatrixFitRows.gather($0, rows: rows, width: dimension, into: embeddings) }
        p.withUnsafeBufferPointer { MatrixFitRows.gather($0, rows: rows, width: classes, into: teacher) }
    }

    /// Copies the listed rows (each `width` floats) of a row-major matrix into `out`.
    static func gather(_ m: UnsafeBufferPointer<Float>, rows: ArraySlice<Int>, width: Int, into out: UnsafeMutablePointer<Float>) {
        for (i, r) in rows.enumerated() {
            (out + i * width).update(from: m.baseAddress! + r * width, count: width)
        }
    }
}

/// Rows read from a label set version and its samples' embeddings in one read transaction, by
/// the batch read (so exactly the rows the transaction's clearance sees, decoded as any read
/// decodes them). Row i is sample `ids[i]`.
struct StoredFitRows: FitRows {
    let transaction: Transaction
    let ids: [UInt64]
    let dimension: Int
    let classes: Int
    let request: BatchRequest
    let arena = BatchArena()

    init(_ transaction: Transaction, ids: [UInt64], set: LabelSet, version: Int) {
        self.transaction = transaction
        self.ids = ids
        dimension = transaction.store.schema.dimension
        classes = transaction.store.schema.classes.count
        var request = BatchRequest()
        request.labels = [LabelSetReference(name: set.name, version: version)]
        request.soft = .dense
        self.request = request
    }

    var count: Int { ids.count }

    func load(_ rows: ArraySlice<Int>, embeddings: UnsafeMutablePointer<Float>, teacher: UnsafeMutablePointer<Float>) throws {
        let wanted = rows.map { ids[$0] }
        var buffers = BatchBuffers()
        buffers.embeddings = embeddings
        var label = LabelBuffers()
        label.dense = teacher
        buffers.labels = [label]
        let found = try wanted.withUnsafeBufferPointer { try transaction.readBatch($0, request, into: buffers, arena: arena) }
        // The ids were read in this transaction: every one is there.
        guard found == wanted.count else {
            throw StoreError.corruptRecord(store: transaction.store.path, table: Table.samples.rawValue, key: "*",
                                           detail: "\(wanted.count - found) of the fitted samples vanished within one read transaction")
        }
    }
}

/// A subset of another source's rows: row i is `base`'s row `rows[i]`.
struct SampledFitRows<Base: FitRows>: FitRows {
    let base: Base
    let rows: [Int]
    var count: Int { rows.count }
    var dimension: Int { base.dimension }
    var classes: Int { base.classes }
    var partCount: Int { base.partCount }
    func part(of row: Int) -> Int { base.part(of: rows[row]) }

    func load(_ wanted: ArraySlice<Int>, embeddings: UnsafeMutablePointer<Float>, teacher: UnsafeMutablePointer<Float>) throws {
        try base.load(wanted.map { rows[$0] }[...], embeddings: embeddings, teacher: teacher)
    }

    // The passes go to the base's, over the base's rows in the same order (the same figures; a
    // base whose parts are elsewhere then runs them there too).
    func partSums(_ wanted: [Int]) throws -> (x: [Double], y: [Double]) { try base.partSums(wanted.map { rows[$0] }) }

    func partCentredProducts(_ wanted: [Int], meanX: [Float], meanY: [Float]) throws -> (xx: [Float], xy: [Float]) {
        try base.partCentredProducts(wanted.map { rows[$0] }, meanX: meanX, meanY: meanY)
    }

    func partEvaluation(_ model: ProjectorModel, rows wanted: [Int], head: [Float]?) throws -> PartEvaluation {
        try base.partEvaluation(model, rows: wanted.map { rows[$0] }, head: head)
    }

    func partCorrections(_ model: ProjectorModel, rows wanted: [Int], head: [Float]?, maxKL: Double, requireTop1: Bool) throws -> [FoundCorrection] {
        let ours = Dictionary(wanted.map { (rows[$0], $0) }, uniquingKeysWith: { first, _ in first })
        return try base.partCorrections(model, rows: wanted.map { rows[$0] }, head: head, maxKL: maxKL, requireTop1: requireTop1).map {
            FoundCorrection(row: ours[$0.row]!, codec: $0.codec, bytes: $0.bytes)
        }
    }
}
