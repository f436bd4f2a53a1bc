/// One sample: a stable id, its embedding, small JSON metadata and payload bytes.
///
/// For example:
///
/// ```swift
/// let sample = Sample(id: 7, embedding: [0.5, -1, 0, 2], metadata: ["source": "web"], payload: Array("a cat".utf8))
/// ```
public struct Sample: Equatable, Sendable {
    /// The sample's id, chosen by the caller and stable for the sample's life.
    public var id: UInt64
    /// The embedding: exactly `schema.dimension` finite numbers. In an `f16` store it is rounded to
    /// half precision when stored, and read back as `Float`.
    public var embedding: [Float]
    /// Small JSON metadata (an object).
    public var metadata: [String: JSONValue]
    /// The payload: image bytes, text, a path… up to 4 GiB − 1 (at least 16 MiB is routine).
    public var payload: [UInt8]
    /// Its taint label: who may read it (secrecy) and what vouches for it (integrity).
    public var taint: TaintLabel

    /// Creates a sample.
    public init(id: UInt64, embedding: [Float], metadata: [String: JSONValue] = [:], payload: [UInt8] = [], taint: TaintLabel = .public) {
        self.id = id
        self.embedding = embedding
        self.metadata = metadata
        self.payload = payload
        self.taint = taint
    }
}

/// Many samples in columns, the shape imports arrive in: one flat row-major embedding matrix
/// instead of one array per sample.
public struct SampleBatch: Sendable {
    /// The ids, one per row.
    public var ids: [UInt64]
    /// `ids.count × dimension` floats, row-major.
    public var embeddings: [Float]
    /// One metadata object per row, or nil for all-empty metadata.
    public var metadata: [[String: JSONValue]]?
    /// One payload per row, or nil for all-empty payloads.
    public var payloads: [[UInt8]]?
    /// One taint label per row, or nil for all ``TaintLabel/public``.
    public var taints: [TaintLabel]?

    /// Creates a batch; ``WriteTransaction/put(_:mode:)`` checks that the columns agree.
    public init(ids: [UInt64], embeddings: [Float], metadata: [[String: JSONValue]]? = nil, payloads: [[UInt8]]? = nil, taints: [TaintLabel]? = nil) {
        self.ids = ids
        self.embeddings = embeddings
        self.metadata = metadata
        self.payloads = payloads
        self.taints = taints
    }

    /// A batch of the given samples.
    public init(_ samples: [Sample]) {
        ids = samples.map(\.id)
        embeddings = samples.flatMap(\.embedding)
        metadata = samples.map(\.metadata)
        payloads = samples.map(\.payload)
        taints = samples.contains { $0.taint != .public } ? samples.map(\.taint) : nil
    }

    /// The number of rows.
    public var count: Int { ids.count }
}

/// What to do when a batch row's id is already in the store.
public enum PutMode: Sendable {
    /// Fail with ``StoreError/idExists(_:)``; nothing is written.
    case insert
    /// Overwrite the stored sample.
    case replace
}

/// The outcome of a batch put.
public struct PutSummary: Equatable, Sendable {
    /// Rows whose id was new.
    public var inserted = 0
    /// Rows that overwrote a stored sample.
    public var replaced = 0
}

/// A sample read in place: checked, but borrowed from LMDB's map instead of copied.
///
/// Lifetime: valid only inside the closure that receives it (see ``Transaction/withSample(_:_:)``).
public struct SampleView {
    /// The sample's id.
    public let id: UInt64
    /// The stored embedding bytes (little-endian, `elementType`), borrowed.
    public let embeddingBytes: UnsafeRawBufferPointer
    /// How `embeddingBytes` are encoded.
    public let elementType: Schema.ElementType
    /// The metadata JSON text (UTF-8), borrowed.
    public let metadataJSON: UnsafeRawBufferPointer
    /// The payload, borrowed.
    public let payload: UnsafeRawBufferPointer
    /// The store's write sequence when this embedding was last written (0 for stores older than
    /// format 3): a projector fitted at sequence S treats embeddings with a larger one as stale.
    public let embeddingSequence: UInt64
    /// The provenance record of the write that stored this sample (0 for stores older than format 3).
    public let provenance: UInt64
    /// The sample's taint label.
    public let taint: TaintLabel
    /// The embedding slot the sample occupies (what label blocks and fitted-sample records are keyed by).
    let slot: UInt64

    /// The number of embedding elements.
    public var dimension: Int { embeddingBytes.count / elementType.byteWidth }

    /// Copies the embedding out as floats.
    public func embedding() -> [Float] {
        [Float](unsafeUninitializedCapacity: dimension) { buffer, count in
            ElementEncoding.load(embeddingBytes, count: dimension, as: elementType, into: buffer.baseAddress!)
            count = dimension
        }
    }

    /// Copies the sample out of the store.
    ///
    /// - Throws: ``JSONParseError`` if the stored metadata is not JSON (see ``metadata()``).
    public func copy() throws -> Sample {
        Sample(id: id, embedding: embedding(), metadata: try metadata(), payload: Array(payload), taint: taint)
    }

    /// Parses the metadata.
    ///
    /// - Throws: ``JSONParseError`` if the stored text is not JSON (it was checked when written,
    ///   and its checksum on read, so this means a bug or a foreign writer).
    public func metadata() throws -> [String: JSONValue] {
        try JSONValue.parse(metadataJSON).objectValue ?? [:]
    }
}
