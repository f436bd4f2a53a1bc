import Foundation

/// One thing a provenance record used or generated, in W3C PROV's sense of an entity.
public struct ProvenanceEntity: Codable, Equatable, Sendable {
    /// What it is: `file`, `samples`, `label_set`, `projector`, `head`.
    public var kind: String
    /// Its name: a file path, a label set, projector or head name.
    public var name: String
    /// The version, for label sets and projectors.
    public var version: Int?
    /// The xxh3-128 content hash (32 hex digits), for files.
    public var hash: String?
    /// Rows (of a file, or samples written).
    public var rows: Int?
    /// The smallest sample id written, for samples.
    public var firstID: UInt64?
    /// The largest sample id written, for samples.
    public var lastID: UInt64?

    /// Creates an entity.
    public init(kind: String, name: String, version: Int? = nil, hash: String? = nil, rows: Int? = nil, firstID: UInt64? = nil, lastID: UInt64? = nil) {
        self.kind = kind
        self.name = name
        self.version = version
        self.hash = hash
        self.rows = rows
        self.firstID = firstID
        self.lastID = lastID
    }

    /// A file, with its content hash and row count.
    public static func file(_ path: String, rows: Int? = nil) throws -> ProvenanceEntity {
        let data = try InputFile.contents(path)
        return ProvenanceEntity(kind: "file", name: path, hash: Checksum.xxh3_128Hex([UInt8](data)), rows: rows)
    }

    enum CodingKeys: String, CodingKey {
        case kind, name, version, hash, rows
        case firstID = "first_id", lastID = "last_id"
    }
}

/// A provenance record, modelled on W3C PROV: an activity, the agent that ran it, what it used
/// and generated, its parameters and its time. Every write transaction appends one.
public struct ProvenanceRecord: Codable, Equatable, Sendable {
    /// The activity: `import`, `label import`, `projector fit`, `head import`, `delete`, `write`, …
    public var activity: String
    /// Who ran it: a user, a model name and version, a team.
    public var agent: String
    /// When, in milliseconds since 1970 (UTC).
    public var timeMilliseconds: Int64
    /// Inputs.
    public var used: [ProvenanceEntity]
    /// Outputs.
    public var generated: [ProvenanceEntity]
    /// Parameters of the activity, as text.
    public var parameters: [String: String]

    /// Creates a record stamped with the current time.
    public init(activity: String, agent: String, used: [ProvenanceEntity] = [], generated: [ProvenanceEntity] = [], parameters: [String: String] = [:]) {
        self.activity = activity
        self.agent = agent
        self.timeMilliseconds = Int64(Date().timeIntervalSince1970 * 1000)
        self.used = used
        self.generated = generated
        self.parameters = parameters
    }

    enum CodingKeys: String, CodingKey {
        case activity, agent, used, generated, parameters
        case timeMilliseconds = "time_ms"
    }
}

/// What ``Transaction/verifyProvenanceLog()`` found.
public struct ProvenanceLogReport: Sendable, Equatable {
    /// Records read.
    public var records: Int
    /// The first record that fails its hash or the chain, and why (nil when the log is intact).
    public var firstBad: (id: UInt64, reason: String)?
    /// The hash of the last record (32 hex digits): keep it elsewhere to detect a rewritten or
    /// truncated log later.
    public var head: String
    /// With ``Transaction/verifyProvenanceLog(expecting:)``: the record whose hash is the expected
    /// head (0 for the empty log's 32 zeros), nil when no intact record has it. A kept head that
    /// is no longer in the chain means the log was truncated or rewritten; one found before the
    /// last record means the log has grown since.
    public var expectedHeadRecord: UInt64?

    public init(records: Int, firstBad: (id: UInt64, reason: String)?, head: String) {
        self.records = records
        self.firstBad = firstBad
        self.head = head
    }

    public static func == (lhs: ProvenanceLogReport, rhs: ProvenanceLogReport) -> Bool {
        lhs.records == rhs.records && lhs.head == rhs.head && lhs.firstBad?.id == rhs.firstBad?.id && lhs.firstBad?.reason == rhs.firstBad?.reason
            && lhs.expectedHeadRecord == rhs.expectedHeadRecord
    }
}

/// The byte layout of a log entry (format-spec/storage.md §12): its own xxh3-128 (of bytes
/// 16…end), the previous entry's own hash (zeros for the first), then the record as JSON.
enum ProvenanceCodec {
    static func encode(_ record: ProvenanceRecord, previous: [UInt8]) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = previous + [UInt8](try encoder.encode(record))
        return Checksum.xxh3_128(body) + body
    }

    /// Checks the entry's own hash; returns the record, its own hash and the previous hash it names.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> (record: ProvenanceRecord, own: [UInt8], previous: [UInt8]) {
        guard bytes.count >= 32 else { throw RecordDecodingError(detail: "entry of \(bytes.count) bytes") }
        let own = Array(bytes[0..<16])
        let actual = Checksum.xxh3_128(Array(bytes[16...]))
        guard own == actual else { throw RecordDecodingError(detail: "hash mismatch: the entry was changed after it was written") }
        do {
            let record = try JSONDecoder().decode(ProvenanceRecord.self, from: Data(bytes[32...]))
            return (record, own, Array(bytes[16..<32]))
        } catch {
            throw RecordDecodingError(detail: "malformed record JSON")
        }
    }
}
