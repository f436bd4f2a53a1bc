import Foundation

/// A projector fit whose passes over each shard run where the shard is (corpus.md K-17): the
/// fitter runs in the writer's process, and every pass that reads a shard's rows — the closed
/// form's sums, the evaluations, the correction search, the minibatches of the refinement — is
/// sent as a request to that shard's ``FitPartServer`` (a Ray actor, say) through an executor,
/// and only its result comes back: d + C sums, d × (d + C) products, three figures, the
/// corrections found, or one minibatch's rows.
///
/// The requests name the rows by their index in the shard's own fitted rows (its samples with a
/// soft label in the source version, in id order), and carry a hash of those ids: a server
/// whose rows differ (another snapshot) refuses, so a fit never mixes two states of a shard.
/// The same passes run over the same rows in the same order as the fit on threads, so the
/// figures are its own up to BLAS's rounding (whose blocking follows the threads each process
/// gives it; bit for bit when the conditions match, as in the tests).
public typealias FitPartExecutor = @Sendable (_ shard: Int, _ request: [UInt8]) throws -> [UInt8]

/// The fitted rows of one shard of a corpus fit.
protocol ShardFitRows: FitRows {
    /// The shard's fitted samples, in id order: row i is `ids[i]`.
    var ids: [UInt64] { get }
}

extension StoredFitRows: ShardFitRows {}

/// One shard's rows, read by requests to the server that holds it.
struct RemoteShardRows: ShardFitRows {
    let shard: Int
    let ids: [UInt64]
    let source: LabelSetReference
    /// The fit's clearance and the shard state its writer read: a server reading another refuses.
    let clearance: Clearance
    let snapshot: UInt64
    let dimension: Int
    let classes: Int
    let execute: FitPartExecutor

    var count: Int { ids.count }

    private func call(_ kind: FitPartRequest.Kind, rows: some Collection<Int>, _ body: (inout ByteBuffer) -> Void = { _ in }) throws -> FitPartReply {
        var request = FitPartRequest.header(kind, clearance: clearance, snapshot: snapshot, source: source, ids: ids, rows: rows)
        body(&request)
        let reply = try execute(shard, request.bytes)
        return FitPartReply(bytes: reply, shard: shard)
    }

    func load(_ rows: ArraySlice<Int>, embeddings: UnsafeMutablePointer<Float>, teacher: UnsafeMutablePointer<Float>) throws {
        var reply = try call(.load, rows: rows)
        try reply.floats(rows.count * dimension, into: embeddings)
        try reply.floats(rows.count * classes, into: teacher)
        try reply.end()
    }

    func partSums(_ rows: [Int]) throws -> (x: [Double], y: [Double]) {
        var reply = try call(.sums, rows: rows)
        let out = (x: try reply.doubles(dimension), y: try reply.doubles(classes))
        try reply.end()
        return out
    }

    func partCentredProducts(_ rows: [Int], meanX: [Float], meanY: [Float]) throws -> (xx: [Float], xy: [Float]) {
        var reply = try call(.centredProducts, rows: rows) { $0.floats(meanX); $0.floats(meanY) }
        let out = (xx: try reply.floats(dimension * dimension), xy: try reply.floats(dimension * classes))
        try reply.end()
        return out
    }

    func partEvaluation(_ model: ProjectorModel, rows: [Int], head: [Float]?) throws -> PartEvaluation {
        var reply = try call(.evaluation, rows: rows) { FitPartRequest.append(model, head: head, to: &$0) }
        let (sum, worst, agree) = (try reply.double(), try reply.double(), try reply.u64())
        guard agree <= UInt64(rows.count) else { throw CorpusError.invalid("the fit's reply from shard \(shard) is damaged: \(agree) agreements in \(rows.count) rows") }
        let out = PartEvaluation(sum: sum, worst: worst, agree: Int(agree))
        try reply.end()
        return out
    }

    func partCorrections(_ model: ProjectorModel, rows: [Int], head: [Float]?, maxKL: Double, requireTop1: Bool) throws -> [FoundCorrection] {
        var reply = try call(.corrections, rows: rows) { buffer in
            FitPartRequest.append(model, head: head, to: &buffer)
            buffer.u64(maxKL.bitPattern)
            buffer.u8(requireTop1 ? 1 : 0)
        }
        var found: [FoundCorrection] = []
        var previous = -1
        for _ in 0..<(try reply.count(rows.count)) {
            let position = try reply.count(rows.count - 1)
            let codec = try reply.u8()
            // Positions ascend (each row once); codecs are storage.md §11.5's.
            guard position > previous, (1...3).contains(codec) else {
                throw CorpusError.invalid("the fit's reply from shard \(shard) is damaged: a correction of position \(position) after \(previous), codec \(codec)")
            }
            previous = position
            found.append(FoundCorrection(row: rows[position], codec: codec, bytes: try reply.counted()))
        }
        try reply.end()
        return found
    }
}

/// The byte layout of a request to a ``FitPartServer`` (all little-endian): kind u8, the fit's
/// clearance (u32-prefixed UTF-8, as ``Clearance/description`` writes it), the snapshot id of the
/// shard state the fit read u64, the source label set (u32-prefixed UTF-8) and version u32, the hash of the shard's fitted ids u64, the
/// row count u32 and rows u32, then per kind: `centredProducts` the means (f32, d then C);
/// `evaluation` and `corrections` the model (d, C, r u32; s, T, A, B, b f32) and the head
/// (u8 present, then d × C f32), `corrections` also max KL (f64 bits u64) and require-top-1 (u8).
enum FitPartRequest {
    enum Kind: UInt8 {
        case load = 1, sums, centredProducts, evaluation, corrections
    }

    static func header(_ kind: Kind, clearance: Clearance, snapshot: UInt64, source: LabelSetReference, ids: [UInt64], rows: some Collection<Int>) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.u8(kind.rawValue)
        buffer.string(clearance.description)
        buffer.u64(snapshot)
        buffer.string(source.name)
        buffer.u32(UInt32(source.version ?? 0))
        buffer.u64(idsHash(ids))
        buffer.u32(UInt32(rows.count))
        for row in rows { buffer.u32(UInt32(row)) }
        return buffer
    }

    static func idsHash(_ ids: [UInt64]) -> UInt64 {
        ids.map(\.littleEndian).withUnsafeBytes { Checksum.xxh3($0, seed: 0) }
    }

    static func append(_ model: ProjectorModel, head: [Float]?, to buffer: inout ByteBuffer) {
        buffer.u32(UInt32(model.dimension)); buffer.u32(UInt32(model.classes)); buffer.u32(UInt32(model.rank))
        buffer.floats([model.scale, model.temperature] + model.a + model.b + model.bias)
        buffer.u8(head == nil ? 0 : 1)
        if let head { buffer.floats(head) }
    }
}

extension ByteBuffer {
    mutating func floats(_ values: [Float]) {
        values.withUnsafeBytes { raw in
            if Int(1).littleEndian == 1 { bytes.append(contentsOf: raw) } else { for v in values { u32(v.bitPattern) } }
        }
    }
}

/// A reply, read with bounds checked (its bytes come from another process).
struct FitPartReply {
    let bytes: [UInt8]
    let shard: Int
    private var offset = 0

    init(bytes: [UInt8], shard: Int) {
        self.bytes = bytes
        self.shard = shard
    }

    private func short(_ what: String) -> CorpusError {
        .invalid("the fit's reply from shard \(shard) is damaged: \(what) at byte \(offset) of \(bytes.count)")
    }

    mutating func take(_ count: Int, _ what: String) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.count - offset else { throw short(what) }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    mutating func u8() throws -> UInt8 { try take(1, "u8").first! }
    mutating func u32() throws -> UInt32 { try take(4, "u32").reversed().reduce(0) { $0 << 8 | UInt32($1) } }
    mutating func u64() throws -> UInt64 { try take(8, "u64").reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    mutating func double() throws -> Double { Double(bitPattern: try u64()) }
    mutating func doubles(_ count: Int) throws -> [Double] { try (0..<count).map { _ in try double() } }

    /// A count (u32) no larger than `limit`.
    mutating func count(_ limit: Int) throws -> Int {
        let value = Int(try u32())
        guard value <= limit else { throw short("a count of \(value), above \(limit)") }
        return value
    }

    mutating func counted() throws -> [UInt8] { Array(try take(Int(try u32()), "bytes")) }

    mutating func floats(_ count: Int, into out: UnsafeMutablePointer<Float>) throws {
        let raw = try take(count * 4, "\(count) floats")
        raw.withUnsafeBytes { source in
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        }
    }

    mutating func floats(_ count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBufferPointer { try floats(count, into: $0.baseAddress!) }
        return out
    }

    func end() throws {
        guard offset == bytes.count else { throw short("\(bytes.count - offset) trailing bytes") }
    }
}

/// Serves the passes of a corpus projector fit over one shard (see ``FitPartExecutor``): what a
/// Ray actor on the shard's machine holds. It opens that shard only. Each request reads the
/// shard in a read transaction of its own, and is refused unless it names the server's
/// clearance and the very commit the fit's writer read (LMDB's transaction id), and its rows'
/// ids hash as the server's: a fit never mixes two states of a shard, nor reads rows under a
/// clearance other than its own. The fitted ids of the last (source, commit) are kept.
///
/// A server is a read capability at its clearance: `load` returns the rows it sees. Open it
/// with the fit's clearance, in a process of whoever may read that much.
public final class FitPartServer: @unchecked Sendable {
    /// The shard served, by index in the corpus.
    public let shard: Int
    private let path: String
    private let store: Store
    private let clearance: Clearance
    private var fitted: (key: String, ids: [UInt64])?
    /// The commit whose requests the shard's version pin was last read for.
    private var pinnedAt: UInt64?
    private let lock = NSLock()

    /// Opens shard `shard` of the corpus at `path` for serving fit passes under `clearance`.
    ///
    /// - Throws: ``CorpusError``; ``TaintError/unknownTag(_:)`` for a clearance naming a tag no
    ///   shard has registered.
    public init(corpus path: String, shard: Int, clearance: Clearance) throws {
        let store = try Corpus.openShard(shard, of: path)
        do { try store.read(clearance: clearance) { try $0.validate(clearance) } } catch { store.close(); throw error }
        self.path = path
        self.store = store
        self.shard = shard
        self.clearance = clearance
    }

    /// Closes the shard.
    public func close() { store.close() }

    /// Runs one request (its bytes as ``RemoteShardRows`` writes them) and returns the reply.
    ///
    /// - Throws: ``CorpusError/invalid(_:)`` for a malformed request, or one whose fitted rows
    ///   are not this shard's; the store's errors.
    public func serve(_ request: [UInt8]) throws -> [UInt8] {
        try lock.withLock {
            try store.read(clearance: clearance) { tx in
                try request.withUnsafeBytes { raw in
                    do { return try serve(ByteReader(raw), in: tx) } catch let error as RecordDecodingError {
                        throw CorpusError.invalid("a fit request to shard \(shard) is malformed: \(error.detail)")
                    }
                }
            }
        }
    }

    private func serve(_ reader: ByteReader, in tx: Transaction) throws -> [UInt8] {
        var reader = reader
        guard let kind = FitPartRequest.Kind(rawValue: try reader.u8("kind")) else { throw RecordDecodingError(detail: "unknown request kind") }
        let fitClearance = try reader.string("clearance")
        guard fitClearance == clearance.description else {
            throw CorpusError.invalid("shard \(shard)'s server reads under clearance \(clearance), the fit under \(fitClearance): open it with the fit's")
        }
        let snapshot = try reader.u64("snapshot")
        guard snapshot == tx.snapshotID else {
            throw CorpusError.invalid("shard \(shard) is not in the state the fit read (commit \(tx.snapshotID) here, \(snapshot) there): it changed, or this is another copy")
        }
        // A new commit (a later fit) may read versions the manifest committed since the last.
        if pinnedAt != snapshot {
            store.committedLabelVersions = try CorpusManifest.read(from: path).labelSets
            pinnedAt = snapshot
        }
        let name = try reader.string("label set")
        let version = Int(try reader.u32("version"))
        let hash = try reader.u64("ids hash")
        let (set, resolved) = try tx.resolveFitSource(LabelSetReference(name: name, version: version))
        let key = "\(name)@\(resolved) at \(snapshot)"
        let ids = try fitted?.key == key ? fitted!.ids : tx.softLabelledSamples(set: set, version: resolved).ids
        fitted = (key, ids)
        guard FitPartRequest.idsHash(ids) == hash else {
            throw CorpusError.invalid("shard \(shard) does not hold the rows the fit reads of \(name)@\(resolved)")
        }
        let count = Int(try reader.u32("row count"))
        try reader.need(4 * count, "\(count) rows")
        // No request reads a row twice, or more rows than the shard has.
        guard count <= ids.count else { throw RecordDecodingError(detail: "\(count) rows of \(ids.count)") }
        let rows = try (0..<count).map { _ in
            let row = Int(try reader.u32("row"))
            guard row < ids.count else { throw RecordDecodingError(detail: "row \(row) of \(ids.count)") }
            return row
        }
        let data = StoredFitRows(tx, ids: ids, set: set, version: resolved)
        var out = ByteBuffer()
        switch kind {
        case .load:
            var x = [Float](repeating: 0, count: count * data.dimension), p = [Float](repeating: 0, count: count * data.classes)
            try x.withUnsafeMutableBufferPointer { xv in try p.withUnsafeMutableBufferPointer { try data.load(rows[...], embeddings: xv.baseAddress!, teacher: $0.baseAddress!) } }
            out.floats(x); out.floats(p)
        case .sums:
            let sums = try data.partSums(rows)
            for v in sums.x + sums.y { out.u64(v.bitPattern) }
        case .centredProducts:
            let meanX = try Self.floats(&reader, data.dimension), meanY = try Self.floats(&reader, data.classes)
            let products = try data.partCentredProducts(rows, meanX: meanX, meanY: meanY)
            out.floats(products.xx); out.floats(products.xy)
        case .evaluation:
            let (model, head) = try Self.model(&reader, data)
            let figures = try data.partEvaluation(model, rows: rows, head: head)
            out.u64(figures.sum.bitPattern); out.u64(figures.worst.bitPattern); out.u64(UInt64(figures.agree))
        case .corrections:
            let (model, head) = try Self.model(&reader, data)
            let maxKL = Double(bitPattern: try reader.u64("max KL")), requireTop1 = try reader.u8("require top-1") != 0
            let found = try data.partCorrections(model, rows: rows, head: head, maxKL: maxKL, requireTop1: requireTop1)
            // Rows are named by their position in the request (the fitter's order).
            let position = Dictionary(rows.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { first, _ in first })
            out.u32(UInt32(found.count))
            for correction in found {
                out.u32(UInt32(position[correction.row]!)); out.u8(correction.codec); out.u32(UInt32(correction.bytes.count)); out.append(correction.bytes)
            }
        }
        guard reader.remaining == 0 else { throw RecordDecodingError(detail: "\(reader.remaining) trailing bytes") }
        return out.bytes
    }

    private static func floats(_ reader: inout ByteReader, _ count: Int) throws -> [Float] {
        let raw = try reader.slice(4 * count, "\(count) floats")
        return (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }

    private static func model(_ reader: inout ByteReader, _ data: StoredFitRows) throws -> (ProjectorModel, [Float]?) {
        let d = Int(try reader.u32("dimension")), c = Int(try reader.u32("classes")), r = Int(try reader.u32("rank"))
        guard d == data.dimension, c == data.classes, r >= 1, r < min(d, c) else { throw RecordDecodingError(detail: "a model of shape \(d), \(c), rank \(r)") }
        let values = try floats(&reader, 2 + d * r + r * c + c)
        let model = ProjectorModel(dimension: d, classes: c, rank: r, scale: values[0], a: Array(values[2..<(2 + d * r)]),
                                   b: Array(values[(2 + d * r)..<(2 + d * r + r * c)]), bias: Array(values[(2 + d * r + r * c)...]), temperature: values[1])
        let head = try reader.u8("head present") != 0 ? try floats(&reader, d * c) : nil
        return (model, head)
    }
}
