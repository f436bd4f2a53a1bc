import Foundation

/// What kind of label an import carries.
public enum LabelKind: String, Sendable, Codable {
    /// One class index per sample.
    case hard
    /// A set of class indices per sample.
    case multi
    /// A distribution over all classes per sample.
    case soft
}

/// How much a codec lost, measured on import against the input distributions.
public struct Fidelity: Equatable, Sendable, Codable {
    /// Mean KL(original ‖ decoded) in nats.
    public var meanKL: Double
    /// Largest KL(original ‖ decoded) of any row, in nats.
    public var maxKL: Double
    /// Fraction of rows whose decoded top-1 class equals the original's.
    public var top1Agreement: Double
    /// Mean encoded soft-label bytes per row.
    public var bytesPerLabel: Double
    /// `bytesPerLabel` ÷ the `dense:f32` size (4 × classes).
    public var ratioToDenseF32: Double
    /// True when compact top-K input was stored as given, every value exactly representable in
    /// the codec (no round trip, KL 0); nil for dense input.
    public var exact: Bool? = nil
    /// Rows per KL(original ‖ decoded) range, by decade (``klHistogramEdges``): bin 0 below
    /// 1e-6 (exact rows included), bin i in [10^(i−7), 10^(i−6)), the last 10 nats and above.
    /// Recorded at import because the original distributions are gone afterwards; nil for
    /// imports before it was recorded (an optional member of the version record, which older
    /// readers skip).
    public var klHistogram: [Int]? = nil

    /// The lower edges of the KL histogram's bins after the first: 1e-6, 1e-5, …, 10 nats.
    public static let klHistogramEdges: [Double] = (-6...1).map { pow(10, Double($0)) }

    /// The histogram bin of a KL value.
    static func klBin(_ kl: Double) -> Int { klHistogramEdges.lastIndex { kl >= $0 }.map { $0 + 1 } ?? 0 }

    enum CodingKeys: String, CodingKey {
        case meanKL = "mean_kl", maxKL = "max_kl", top1Agreement = "top1_agreement"
        case bytesPerLabel = "bytes_per_label", ratioToDenseF32 = "ratio_to_dense_f32", exact
        case klHistogram = "kl_histogram"
    }
}

/// One version of a label set: the state after one import.
public struct LabelSetVersion: Equatable, Sendable, Codable {
    /// The version number, from 1.
    public var version: Int
    /// Who produced the labels, e.g. `resnet50@2024-03` or `annotators:teamA`.
    public var agent: String
    /// When the import ran, in milliseconds since 1970 (UTC).
    public var timeMilliseconds: Int64
    /// What the import carried.
    public var kind: LabelKind
    /// Rows the import wrote.
    public var rows: Int
    /// Samples with a label in this version (imported now or carried from earlier versions).
    public var labelled: Int
    /// Bytes of soft-label encodings the import wrote.
    public var softBytes: Int
    /// Views the import wrote, in a per-view set (nil for a per-sample one).
    public var views: Int? = nil
    /// Codec fidelity of this import's soft labels (nil for hard and multi imports).
    public var fidelity: Fidelity?
    /// The provenance record of the import.
    public var provenance: UInt64?
    /// The taint label of the label source (e.g. a teacher trained on licensed data); every row
    /// this import wrote carries it joined with its sample's label. Nil (stores before format 4)
    /// reads as ``TaintLabel/public``.
    public var source: TaintLabel?
    /// True when the clearance reading this record does not see the whole store, so the
    /// statistics (`rows`, `labelled`, `softBytes`, `fidelity`), which count every row, were
    /// zeroed instead of revealing how much is hidden.
    public var statisticsRedacted = false

    /// The source label, ``TaintLabel/public`` when none was given.
    public var sourceLabel: TaintLabel { source ?? .public }

    /// True once `labels drop SET@V` dropped the version (format 7): it reads as gone, and its
    /// rows remain only where later versions still read them.
    public var dropped: Bool? = nil

    /// True when the version was dropped.
    public var isDropped: Bool { dropped == true }

    enum CodingKeys: String, CodingKey {
        case version, agent, kind, rows, labelled, fidelity, provenance, source, dropped, views
        case timeMilliseconds = "time_ms", softBytes = "soft_bytes"
    }

    /// Zeroes the statistics (see ``statisticsRedacted``).
    mutating func redactStatistics() {
        rows = 0
        labelled = 0
        softBytes = 0
        if views != nil { views = 0 }
        fidelity = nil
        statisticsRedacted = true
    }
}

/// A label set: its name, its codec and every version.
public struct LabelSet: Equatable, Sendable {
    /// The name.
    public var name: String
    /// The internal id used in keys.
    public var id: UInt32
    /// The soft-label codec, fixed by the first soft import (nil until then).
    public var codec: SoftLabelCodec?
    /// Every version, oldest first; `versions[v - 1]` is version v.
    public var versions: [LabelSetVersion]
    /// True for a per-view set (format 8): each row holds a sample's augmented views, each with
    /// its own label. Fixed by the set's first import.
    public var perView = false
    /// The latest version the store holds, when a corpus's manifest hides later ones (their
    /// rows are not damage, only uncommitted): see ``Store/committedLabelVersions``.
    var recordedLatest: Int? = nil

    /// The latest version number (0 before the first import).
    public var latest: Int { versions.count }

    /// The latest version the store holds, committed to its corpus or not: what a row's or a
    /// posting's version is checked against.
    var storedLatest: Int { recordedLatest ?? latest }
}

/// The label of one sample in one label-set version, decoded.
public struct Label: Equatable, Sendable {
    /// The version whose import wrote this row (≤ the version asked for).
    public var version: Int
    /// The hard label, if any.
    public var hard: Int?
    /// The multi-label classes (sorted), if any.
    public var multi: [Int]?
    /// The decoded soft label, if any: C probabilities summing to 1.
    public var soft: [Float]?
    /// Its taint label: the sample's label joined with the label source's (conservative propagation).
    public var taint: TaintLabel = .public
    /// In a per-view set, every view of the sample in this row, in ascending view number (the
    /// other label fields are then nil).
    public var views: [ViewLabel]? = nil

    /// A label.
    public init(version: Int, hard: Int? = nil, multi: [Int]? = nil, soft: [Float]? = nil, taint: TaintLabel = .public) {
        self.version = version
        self.hard = hard
        self.multi = multi
        self.soft = soft
        self.taint = taint
    }

    /// The label as a distribution: the soft label, else a one-hot hard label, else uniform
    /// over the multi-label's classes.
    public func distribution(classCount: Int) -> [Float] {
        if let soft { return soft }
        var out = [Float](repeating: 0, count: classCount)
        if let hard { out[hard] = 1 } else if let multi, !multi.isEmpty {
            for c in multi { out[c] = 1 / Float(multi.count) }
        }
        return out
    }

    /// The most probable class and its probability (ties: smaller class index); nil for an empty multi-label.
    public var top1: (classIndex: Int, confidence: Float)? {
        if let soft {
            var best = 0
            for i in 1..<soft.count where soft[i] > soft[best] { best = i }
            return (best, soft[best])
        }
        if let hard { return (hard, 1) }
        return nil
    }
}

/// Label rows and label-set records: their byte layouts (format-spec/storage.md, "Label sets").
enum LabelRecord {
    static let version: UInt8 = 1
    static let hasHard: UInt8 = 1, hasMulti: UInt8 = 2, hasSoft: UInt8 = 4
    /// A per-view row (format 8): bits 0 and 2 then say which per-view columns it holds.
    static let hasViews: UInt8 = 8
    /// A per-view row whose views carry extra parameters.
    static let hasExtras: UInt8 = 16

    /// The fields of a stored row; `soft` and `views` borrow the value. A per-view row has only
    /// `views`.
    struct Row {
        var hard: UInt32?
        var multi: [UInt32]?
        var soft: UnsafeRawBufferPointer?
        var views: ViewSection?

        /// Throws unless the row's layout is its set's: per-view rows in per-view sets only.
        func checkLayout(perView: Bool) throws {
            guard (views != nil) == perView else {
                throw RecordDecodingError(detail: perView ? "a per-sample row in a per-view set" : "a per-view row in a per-sample set")
            }
        }
    }

    /// Key of a label row: set id u32 BE, sample id u64 BE, version u32 BE.
    static func rowKey(set: UInt32, sample: UInt64, version: UInt32) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(16)
        BigEndianKey.append(set, to: &key)
        BigEndianKey.append(sample, to: &key)
        BigEndianKey.append(version, to: &key)
        return key
    }

    /// Key of a version record: set id u32 BE, version u32 BE.
    static func versionKey(set: UInt32, version: UInt32) -> [UInt8] {
        var key: [UInt8] = []
        BigEndianKey.append(set, to: &key)
        BigEndianKey.append(version, to: &key)
        return key
    }

    /// Key of an index entry: set, class, inverted confidence (so ascending keys list the most
    /// confident first), sample, from-version.
    static func indexKey(set: UInt32, classIndex: UInt32, confidence: Float, sample: UInt64, from: UInt32) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(24)
        BigEndianKey.append(set, to: &key)
        BigEndianKey.append(classIndex, to: &key)
        // Non-negative floats order like their bit patterns.
        BigEndianKey.append(UInt32.max - max(confidence, 0).bitPattern, to: &key)
        BigEndianKey.append(sample, to: &key)
        BigEndianKey.append(from, to: &key)
        return key
    }

    static let openEnded = UInt32.max

    /// An index value (formats 2–5, read only): checksum (xxh3-64 of bytes 8…11, seed = xxh3-64
    /// of the key) and the until-version (exclusive; `openEnded` while current).
    static func decodeIndexValue(key: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) throws -> UInt32 {
        guard bytes.count == 12 else { throw RecordDecodingError(detail: "index entry of \(bytes.count) bytes, expected 12") }
        let body = try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key))
        return UInt32(littleEndian: body.loadUnaligned(as: UInt32.self))
    }

    /// A row of the one-entry-per-row layout of formats 2–5, read from older stores.
    static func decodeRow(key: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) throws -> Row {
        var reader = ByteReader(try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key)))
        let recordVersion = try reader.u8("record version")
        guard recordVersion == version else { throw RecordDecodingError(detail: "unknown label record version \(recordVersion)") }
        let flags = try reader.u8("flags")
        try reader.skip(2, "reserved")
        let hard = try reader.u32("hard label")
        let multiCount = Int(try reader.u32("multi count"))
        let softCount = Int(try reader.u32("soft length"))
        guard multiCount <= reader.remaining / 4 else { throw RecordDecodingError(detail: "multi count \(multiCount) exceeds the record") }
        var multi: [UInt32] = []
        for _ in 0..<multiCount { multi.append(try reader.u32("multi class")) }
        let soft = try reader.slice(softCount, "soft label")
        guard reader.remaining == 0 else { throw RecordDecodingError(detail: "\(reader.remaining) trailing bytes") }
        return Row(
            hard: flags & hasHard != 0 ? hard : nil,
            multi: flags & hasMulti != 0 ? multi : nil,
            soft: flags & hasSoft != 0 ? soft : nil)
    }

    /// A JSON record with an 8-byte checksum in front (xxh3-64 of the JSON bytes, seed = xxh3-64 of the key).
    static func encodeJSON<T: Encodable>(_ value: T, key: [UInt8]) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return SealedRecord.seal([UInt8](try encoder.encode(value)), seed: SealedRecord.seed(key: key))
    }

    static func decodeJSON<T: Decodable>(_ type: T.Type, key: UnsafeRawBufferPointer, _ bytes: UnsafeRawBufferPointer) throws -> T {
        let body = try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key))
        let value: T
        do {
            value = try JSONDecoder().decode(T.self, from: Data(body))
        } catch {
            throw RecordDecodingError(detail: "malformed record JSON")
        }
        // Versions are u32 in keys: a latest version outside that range cannot be real.
        if let record = value as? any IdentifiedRecord, record.latest < 0 || record.latest >= Int(UInt32.max) {
            throw RecordDecodingError(detail: "latest version \(record.latest) out of range")
        }
        return value
    }
}

/// A stored record that owns a numeric id used in other tables' keys.
protocol IdentifiedRecord: Decodable {
    var id: UInt32 { get }
    /// The latest version, 0 for none; versions are u32 in keys.
    var latest: Int { get }
}

/// The stored form of a label set's record (`label_sets` table).
struct LabelSetRecord: Codable, IdentifiedRecord {
    var id: UInt32
    var codec: String?
    var createdMilliseconds: Int64
    var latest: Int
    /// True for a per-view set (format 8); omitted for a per-sample one.
    var views: Bool? = nil

    enum CodingKeys: String, CodingKey {
        case id, codec, latest, views
        case createdMilliseconds = "created_ms"
    }
}
