import Foundation

/// A projector: its name and every version.
public struct Projector: Equatable, Sendable {
    /// The name.
    public var name: String
    /// The internal id used in keys.
    public var id: UInt32
    /// Every version, oldest first; `versions[v - 1]` is version v.
    public var versions: [ProjectorVersion]
    /// The latest version number.
    public var latest: Int { versions.count }
}

/// What one fit produced, and from what.
public struct ProjectorVersion: Equatable, Sendable, Codable {
    /// The version number, from 1.
    public var version: Int
    /// The label set it was fitted from.
    public var sourceSet: String
    /// The version of that label set.
    public var sourceVersion: Int
    /// The base head used, if any.
    public var head: String?
    /// The content hash of that head when it was fitted (format 5): a head replaced since reads
    /// as changed, and the version's rows as `stale`. Nil without a head, or before format 5.
    public var headHash: String?
    /// The fit's options (rank, holdout, seed, …).
    public var options: ProjectorFitOptions
    /// The fit's figures.
    public var report: ProjectorFitReport
    /// Samples of the source label set (fitted and held out) the bound is claimed for.
    public var samples: Int
    /// The error bound, when one was asked for: every sample of the source set reads within it.
    public var maxKL: Double?
    /// Whether the bound also requires the teacher's top-1 class.
    public var requireTop1: Bool
    /// Samples that needed a stored correction to meet the bound.
    public var corrections: Int
    /// Bytes of those corrections.
    public var correctionBytes: Int
    /// Bytes of the parameters (s, T, A, B, b as f32).
    public var parameterBytes: Int
    /// The store's write sequence at the fit: embeddings written later are stale for this version.
    public var sequence: UInt64
    /// When it was fitted, in milliseconds since 1970 (UTC).
    public var timeMilliseconds: Int64
    /// Who fitted it.
    public var agent: String
    /// The provenance record of the fit.
    public var provenance: UInt64?
    /// The join of the taint labels of every label (sample ⊔ label source) it was fitted on, and of
    /// its head; regenerated labels carry it joined with their sample's. Nil (before format 4)
    /// reads as public. Nil as well when ``statisticsRedacted``: the label follows the rows it was
    /// fitted on (a relabel joins into it), so showing it to a clearance that does not admit it
    /// would tell which hidden rows it used.
    public var taint: TaintLabel?
    /// True when the reading clearance does not admit ``taint``: the version cannot be loaded and
    /// its figures, computed from data the reader may not see, were zeroed.
    public var statisticsRedacted = false

    /// The taint label, ``TaintLabel/public`` when none was recorded.
    public var taintLabel: TaintLabel { taint ?? .public }

    enum CodingKeys: String, CodingKey {
        case version, head, options, report, samples, corrections, sequence, agent, provenance, taint
        case sourceSet = "source_set", sourceVersion = "source_version", maxKL = "max_kl", requireTop1 = "require_top1", headHash = "head_hash"
        case correctionBytes = "correction_bytes", parameterBytes = "parameter_bytes", timeMilliseconds = "time_ms"
    }
}

extension ProjectorVersion {
    /// The soft-label bytes stored for the versions of `set` this version was fitted on (0 when
    /// the set is gone or its statistics are redacted): what the projector stands in for.
    func storedLabelBytes(in set: LabelSet?) -> Int {
        set?.versions.prefix(sourceVersion).reduce(0) { $0 + $1.softBytes } ?? 0
    }

    /// Zeroes every figure computed from the fitted data (see ``statisticsRedacted``).
    mutating func redactStatistics() {
        samples = 0
        corrections = 0
        correctionBytes = 0
        report.trainRows = 0
        report.holdoutRows = 0
        report.trainMeanKL = 0
        report.trainMaxKL = 0
        report.trainTop1 = 0
        report.holdoutMeanKL = 0
        report.holdoutMaxKL = 0
        report.holdoutTop1 = 0
        report.closedFormMeanKL = 0
        report.rankSearch = nil
        taint = nil
        statisticsRedacted = true
    }
}

/// The stored record of a projector (`projectors` table).
struct ProjectorRecord: Codable, IdentifiedRecord {
    var id: UInt32
    var latest: Int
}

/// Byte layouts of heads, parameters and corrections (format-spec/storage.md §11).
enum ProjectorCodec {
    /// A matrix value: checksum (xxh3-64 of bytes 8…end, seed = xxh3-64 of the key), then
    /// `header` u32 fields, then f32 values.
    static func encodeFloats(key: [UInt8], header: [UInt32], floats: [[Float]]) -> [UInt8] {
        var body: [UInt8] = []
        for h in header { appendLE(h, to: &body) }
        for array in floats { for v in array { appendLE(v.bitPattern, to: &body) } }
        return SealedRecord.seal(body, seed: SealedRecord.seed(key: key))
    }

    /// Checks the checksum and returns the header fields and the float payload.
    static func decodeFloats(key: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer, headerCount: Int) throws -> (header: [UInt32], floats: [Float]) {
        guard bytes.count >= 8 + 4 * headerCount, (bytes.count - 8 - 4 * headerCount) % 4 == 0 else {
            throw RecordDecodingError(detail: "record of \(bytes.count) bytes")
        }
        let body = try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key))
        let header = (0..<headerCount).map { UInt32(littleEndian: body.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        let start = 4 * headerCount
        let floats = (0..<((body.count - start) / 4)).map {
            Float(bitPattern: UInt32(littleEndian: body.loadUnaligned(fromByteOffset: start + 4 * $0, as: UInt32.self)))
        }
        return (header, floats)
    }

    /// Decodes a parameters value (format-spec/storage.md §11.4, R-21) into a model.
    static func decodeParameters(key: [UInt8], _ bytes: UnsafeRawBufferPointer, schema: Schema) throws -> ProjectorModel {
        let (header, floats) = try key.withUnsafeBytes { try decodeFloats(key: $0, bytes, headerCount: 3) }
        let d = Int(header[0]), c = Int(header[1]), r = Int(header[2])
        // d and C are checked first, so r · (d + C) cannot overflow for a rank the record can hold.
        guard d == schema.dimension, c == schema.classes.count, r >= 1, r <= floats.count, floats.count == 2 + d * r + r * c + c else {
            throw RecordDecodingError(detail: "parameters do not match d = \(d), C = \(c), r = \(r)")
        }
        var at = 2
        func take(_ n: Int) -> [Float] { defer { at += n }; return Array(floats[at..<(at + n)]) }
        let a = take(d * r), b = take(r * c), bias = take(c)
        return ProjectorModel(dimension: d, classes: c, rank: r, scale: floats[0], a: a, b: b, bias: bias, temperature: floats[1])
    }

    /// A correction: checksum, a codec byte (1 = adaptive with the version's EPS, 2 = dense:f16,
    /// 3 = dense:f32), the encoded teacher label.
    static func encodeCorrection(key: [UInt8], codec: UInt8, bytes: [UInt8]) -> [UInt8] {
        SealedRecord.seal([codec] + bytes, seed: SealedRecord.seed(key: key))
    }

    static func decodeCorrection(key: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) throws -> (codec: UInt8, bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 9 else { throw RecordDecodingError(detail: "correction of \(bytes.count) bytes") }
        let body = try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key))
        return (body[0], UnsafeRawBufferPointer(rebasing: body[1...]))
    }

    /// The same layout as label-set version keys: id u32 BE + version u32 BE.
    static func versionKey(id: UInt32, version: Int) -> [UInt8] {
        LabelRecord.versionKey(set: id, version: UInt32(version))
    }

    /// What a correction of `encoded` label bytes counts in a version's `correction_bytes`: its
    /// key (16 bytes) and its value (checksum, codec byte, label), as ``encodeCorrection(key:codec:bytes:)`` writes it.
    static func correctionRecordBytes(encoded: Int) -> Int { 16 + 8 + 1 + encoded }

    static func correctionKey(id: UInt32, version: Int, sample: UInt64) -> [UInt8] {
        var key = versionKey(id: id, version: version)
        BigEndianKey.append(sample, to: &key)
        return key
    }
}
