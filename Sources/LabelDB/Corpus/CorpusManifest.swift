import Foundation

/// The manifest of a sharded corpus (`format-spec/corpus.md`): a directory holding N LabelDB
/// stores (shards) and `corpus.json`, which names them, the schema they share, and the rule that
/// routes each id to exactly one shard. It is replaced atomically (write, fsync, rename), and its
/// checksum is verified before anything in it is trusted.
///
public struct CorpusManifest: Equatable, Sendable {
    /// How ids are routed to shards.
    public enum Routing: Equatable, Sendable {
        /// xxh3-64 of the id's 8 big-endian bytes (seed 0), modulo the shard count.
        case hash
        /// Shard i holds the ids in `bounds[i]`, half-open [lo, hi); the ranges ascend and do
        /// not overlap, and an id outside every range belongs to no shard.
        case range([Range<UInt64>])
    }

    /// The file name of the manifest inside the corpus directory.
    public static let fileName = "corpus.json"

    /// The manifest's generation: each replacement takes the next number, so a reader that pinned
    /// one can tell a newer one apart.
    public var generation: Int
    /// The embedding dimension every shard has.
    public var dimension: Int
    /// The element type every shard stores.
    public var elementType: Schema.ElementType
    /// The class vocabulary every shard has.
    public var classes: [String]
    /// The shards' directories, relative to the corpus directory, in shard order.
    public var shards: [String]
    /// The routing rule.
    public var routing: Routing
    /// Each label set's committed latest version: a reader of the corpus sees no version past
    /// it (and no set missing here), whatever the shards hold, so an import that committed in
    /// some shards only — a crash between shards — stays invisible until the next import of the
    /// set replaces it.
    public var labelSets: [String: Int]
    /// Each label set's latest version when the store was split (``split(store:into:shards:rule:clearance:agent:)``):
    /// the records of those versions hold the whole store's `rows`, `soft_bytes` and fidelity in
    /// every shard (only `labelled` is each shard's own), where a version imported through the
    /// corpus holds each shard's part.
    public var splitVersions: [String: Int]
    /// Each projector's latest version.
    public var projectors: [String: Int]
    /// Each shard's committed state at this generation, in shard order.
    public var shardStates: [ShardState]

    /// What the manifest records of a shard when it commits: the length and head hash of its
    /// provenance log, so `audit --verify-log` on the corpus can tell a shard whose log was
    /// rewritten or truncated, or one that committed past the manifest.
    public struct ShardState: Equatable, Sendable {
        /// Records in the shard's provenance log.
        public var records: Int
        /// The hash of its last record (32 hex digits; zeros for an empty log).
        public var head: String

        /// A state.
        public init(records: Int, head: String) {
            self.records = records
            self.head = head
        }

        /// The state of a shard with an empty log.
        public static let empty = ShardState(records: 0, head: String(repeating: "0", count: 32))
    }

    /// A manifest; ``problem()`` checks it. Shard states default to empty logs.
    public init(generation: Int = 1, dimension: Int, elementType: Schema.ElementType, classes: [String], shards: [String], routing: Routing,
                labelSets: [String: Int] = [:], splitVersions: [String: Int] = [:], projectors: [String: Int] = [:], shardStates: [ShardState]? = nil) {
        self.generation = generation
        self.dimension = dimension
        self.elementType = elementType
        self.classes = classes
        self.shards = shards
        self.routing = routing
        self.labelSets = labelSets
        self.splitVersions = splitVersions
        self.projectors = projectors
        self.shardStates = shardStates ?? shards.map { _ in .empty }
    }

    /// The shard that holds `id`, or nil when the range rule has no range for it.
    public func shard(of id: UInt64) -> Int? {
        switch routing {
        case .hash:
            let hash = withUnsafeBytes(of: id.bigEndian) { Checksum.xxh3($0, seed: 0) }
            return Int(hash % UInt64(shards.count))
        case .range(let bounds):
            return bounds.firstIndex { $0.contains(id) }
        }
    }

    /// Why the manifest cannot describe a corpus, or nil.
    public func problem() -> String? {
        guard generation >= 1 else { return "generation \(generation) is below 1" }
        guard !shards.isEmpty else { return "a corpus has at least one shard" }
        guard Set(shards).count == shards.count else { return "a shard is named twice" }
        for shard in shards where shard.isEmpty || shard.hasPrefix("/") || shard.split(separator: "/").contains("..") || shard == Self.fileName {
            return "shard path '\(shard)' must be a relative path inside the corpus directory"
        }
        guard (try? Schema(dimension: dimension, elementType: elementType, classes: classes)) != nil else { return "the schema is invalid" }
        guard shardStates.count == shards.count else { return "\(shardStates.count) shard states for \(shards.count) shards" }
        for state in shardStates where state.records < 0 || Checksum.bytes(hex: state.head)?.count != 16 {
            return "a shard state needs a record count ≥ 0 and a 32-digit hex head"
        }
        for (name, version) in splitVersions where labelSets[name].map({ version > $0 }) ?? true {
            return "label set '\(name)' was split at version \(version), past its committed \(labelSets[name] ?? 0)"
        }
        for (name, version) in labelSets.merging(projectors, uniquingKeysWith: min) where name.isEmpty || version < 1 {
            return "label set or projector '\(name)' at version \(version): names are not empty, versions start at 1"
        }
        if case .range(let bounds) = routing {
            guard bounds.count == shards.count else { return "\(bounds.count) ranges for \(shards.count) shards" }
            for (a, b) in zip(bounds, bounds.dropFirst()) where b.lowerBound < a.upperBound {
                return "ranges must ascend without overlapping ([\(a.lowerBound), \(a.upperBound)) then [\(b.lowerBound), \(b.upperBound)))"
            }
        }
        return nil
    }
}

extension CorpusManifest {
    /// The manifest's members, without the checksum (compact JSON, sorted keys, is what the
    /// checksum covers).
    var body: JSONValue {
        var routingJSON: [String: JSONValue] = ["rule": .string("hash")]
        if case .range(let bounds) = routing {
            routingJSON = ["rule": .string("range"), "bounds": .array(bounds.map { .array([.uint($0.lowerBound), .uint($0.upperBound)]) })]
        }
        return .object([
            "format": .string("labeldb-corpus"), "version": .int(1), "generation": .int(Int64(generation)),
            "schema": .object(["dimension": .int(Int64(dimension)), "element": .string(elementType.rawValue), "classes": .array(classes.map { .string($0) })]),
            "shards": .array(shards.map { .string($0) }), "routing": .object(routingJSON),
            "label_sets": .object(labelSets.mapValues { .int(Int64($0)) }), "projectors": .object(projectors.mapValues { .int(Int64($0)) }),
            "split_versions": .object(splitVersions.mapValues { .int(Int64($0)) }),
            "shard_states": .array(shardStates.map { ["records": .int(Int64($0.records)), "head": .string($0.head)] }),
        ])
    }

    /// The manifest's members as JSON, without the checksum (checked when it was read).
    public var document: JSONValue { body }

    /// The manifest's bytes: its members and `checksum`, the xxh3-64 (seed 0) of the members'
    /// compact sorted JSON as 16 lowercase hex digits.
    public func encoded() -> [UInt8] {
        guard case .object(var members) = body else { return [] }
        members["checksum"] = .string(Self.checksum(of: members))
        return Array(JSONValue.object(members).serialized().utf8) + [0x0A]
    }

    /// The checksum of manifest members (without `checksum`): xxh3-64, seed 0, of their compact
    /// sorted JSON, as 16 lowercase hex digits (K-1).
    static func checksum(of members: [String: JSONValue]) -> String {
        String(Checksum.xxh3(Array(JSONValue.object(members).serialized().utf8)), radix: 16).leftPadded(to: 16)
    }

    /// Parses and checks manifest bytes: the checksum first, then every member.
    public init(decoding bytes: [UInt8]) throws {
        guard case .object(var members)? = try? JSONValue.parse(bytes) else { throw CorpusError.damaged("not a JSON object") }
        guard let stored = members.removeValue(forKey: "checksum")?.stringValue else { throw CorpusError.damaged("no checksum") }
        let actual = Self.checksum(of: members)
        guard stored == actual else { throw CorpusError.damaged("checksum \(stored) does not match the manifest (\(actual))") }
        guard members["format"] == .string("labeldb-corpus"), members["version"] == .int(1) else {
            throw CorpusError.damaged("not a version-1 LabelDB corpus manifest")
        }
        func integer(_ value: JSONValue?) -> Int? { if case .int(let v)? = value { Int(exactly: v) } else { nil } }
        func id(_ value: JSONValue?) -> UInt64? {
            switch value { case .int(let v)?: UInt64(exactly: v); case .uint(let v)?: v; default: nil }
        }
        let schema = members["schema"]
        guard let generation = integer(members["generation"]), let dimension = integer(schema?["dimension"]),
              let element = schema?["element"]?.stringValue.flatMap(Schema.ElementType.init(rawValue:)),
              let classes = schema?["classes"]?.arrayValue?.compactMap(\.stringValue), classes.count == schema?["classes"]?.arrayValue?.count,
              let shards = members["shards"]?.arrayValue?.compactMap(\.stringValue), shards.count == members["shards"]?.arrayValue?.count else {
            throw CorpusError.damaged("a member is missing or of the wrong type")
        }
        let routing: Routing
        switch members["routing"]?["rule"]?.stringValue {
        case "hash": routing = .hash
        case "range":
            let pairs = members["routing"]?["bounds"]?.arrayValue ?? []
            let bounds = pairs.compactMap { pair -> Range<UInt64>? in
                guard let items = pair.arrayValue, items.count == 2, let lo = id(items[0]), let hi = id(items[1]), lo < hi else { return nil }
                return lo..<hi
            }
            guard bounds.count == pairs.count else { throw CorpusError.damaged("a range is not [lo, hi) with lo < hi") }
            routing = .range(bounds)
        default: throw CorpusError.damaged("unknown routing rule")
        }
        func versions(_ value: JSONValue?) throws -> [String: Int] {
            guard let members = value?.objectValue else { throw CorpusError.damaged("label_sets, split_versions and projectors must be objects") }
            return try members.mapValues { guard let v = integer($0) else { throw CorpusError.damaged("a version is not an integer") }; return v }
        }
        guard let states = members["shard_states"]?.arrayValue else { throw CorpusError.damaged("shard_states is missing") }
        let shardStates = try states.map { state -> ShardState in
            guard let records = integer(state["records"]), let head = state["head"]?.stringValue else { throw CorpusError.damaged("a shard state is malformed") }
            return ShardState(records: records, head: head)
        }
        self.init(generation: generation, dimension: dimension, elementType: element, classes: classes, shards: shards, routing: routing,
                  labelSets: try versions(members["label_sets"]), splitVersions: try versions(members["split_versions"]),
                  projectors: try versions(members["projectors"]), shardStates: shardStates)
        if let problem = problem() { throw CorpusError.damaged(problem) }
    }

    /// Reads and checks the manifest of the corpus in `directory`.
    public static func read(from directory: String) throws -> CorpusManifest {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else { throw CorpusError.notACorpus(directory) }
        do { return try CorpusManifest(decoding: [UInt8](data)) } catch CorpusError.damaged(let detail) {
            throw CorpusError.damaged("\(path): \(detail)")
        }
    }

    /// Replaces the manifest of the corpus in `directory` atomically: the bytes go to a temporary
    /// file, which is flushed to disk and renamed over `corpus.json`, and the directory is flushed
    /// — so a reader sees the old manifest or the new one, never a mix, even after a crash.
    public func write(to directory: String) throws {
        if let problem = problem() { throw CorpusError.invalid(problem) }
        try AtomicFile.replace(Self.fileName, in: directory, with: encoded())
    }
}

/// Errors of sharded corpora.
public enum CorpusError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The directory holds no `corpus.json`.
    case notACorpus(String)
    /// The manifest's bytes do not check: its checksum, or a member that cannot be right.
    case damaged(String)
    /// A manifest about to be written does not describe a corpus.
    case invalid(String)
    /// Another writer holds the corpus's lock.
    case busy(String)
    /// A shard write names a write session that is not the corpus's open one (K-13).
    case noSession(String)
    /// A write opened a corpus's shard directly: shards are written only through their corpus.
    case directShardWrite(shard: String, corpus: String, index: Int)
    /// A shard write holds an id the routing rule gives to another shard (or to none).
    case wrongShard(id: UInt64, shard: Int, routed: Int?)
    /// The shards hold different copies of what every shard holds alike (a base head, a
    /// projector's version number): a shard was written behind the corpus's back.
    case shardsDisagree(String)

    /// What is wrong, in words a user can act on.
    public var description: String {
        switch self {
        case .notACorpus(let path): "\(path) is not a LabelDB corpus: no \(CorpusManifest.fileName) in the directory"
        case .damaged(let detail): "the corpus manifest is damaged: \(detail)"
        case .invalid(let detail): "invalid corpus manifest: \(detail)"
        case .busy(let path): "another writer has the corpus \(path) open (it holds \(path)/\(CorpusWriter.lockFileName)); one writer at a time"
        case .noSession(let detail): "no such write session: \(detail)"
        case .directShardWrite(let shard, let corpus, let index):
            "\(shard) is shard \(index) of the corpus \(corpus): write through the corpus (a direct write would give one shard rows or versions the manifest does not know)"
        case .wrongShard(let id, let shard, let routed):
            "id \(id) belongs to \(routed.map { "shard \($0)" } ?? "no shard"), not to shard \(shard): route rows with the corpus's rule"
        case .shardsDisagree(let detail): "the corpus's shards disagree: \(detail)"
        }
    }
}

extension CorpusManifest {
    /// Throws when the store at `path` is a shard of a corpus — its parent directory holds a
    /// manifest naming it — since a shard is written only through its corpus (K-8). A manifest
    /// that does not read leaves the store writable: it names nothing.
    ///
    /// - Throws: ``CorpusError/directShardWrite(shard:corpus:index:)``.
    public static func refuseDirectWrite(to path: String) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let parent = url.deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: parent + "/" + fileName), let manifest = try? read(from: parent),
              let index = manifest.shards.firstIndex(of: url.lastPathComponent) else { return }
        throw CorpusError.directShardWrite(shard: path, corpus: parent, index: index)
    }
}
