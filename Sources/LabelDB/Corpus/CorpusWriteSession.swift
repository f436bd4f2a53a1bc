import Foundation

/// A write session of a corpus (K-13): the corpus's one writer hands each shard's part of one
/// write to another process — a Ray task, say — which writes it straight into that shard, and
/// then commits the whole write in the manifest itself. The shards are written in parallel,
/// while the writer keeps K-6 (it holds the lock throughout) and K-7 (it allocates the version,
/// and readers see none of the write before the manifest records it).
///
/// The session lives in `corpus.session` beside the manifest while the writer has it open; a
/// shard write names it, and is refused unless it is the open one, of the manifest's current
/// generation, and a writer holds the lock.
public struct CorpusWriteSession: Equatable, Sendable {
    /// The session file's name inside the corpus directory.
    public static let fileName = "corpus.session"

    /// The session's name: 32 random hex digits.
    public var id: String
    /// The manifest generation the session writes on top of.
    public var generation: Int
    /// The label set the session imports a version of, or nil for a sample import.
    public var labelSet: String?
    /// The version the manifest allocated to that import.
    public var version: Int?

    /// The session as JSON: `session`, `generation`, and `label_set` with `version` for a label import.
    public var document: JSONValue {
        var members: [String: JSONValue] = ["session": .string(id), "generation": .int(Int64(generation))]
        if let labelSet, let version {
            members["label_set"] = .string(labelSet)
            members["version"] = .int(Int64(version))
        }
        return .object(members)
    }

    /// A session.
    public init(id: String, generation: Int, labelSet: String?, version: Int?) {
        self.id = id
        self.generation = generation
        self.labelSet = labelSet
        self.version = version
    }

    /// Parses session-file bytes (untrusted: written by a writer that may have died mid-way).
    public init(decoding bytes: [UInt8]) throws {
        guard case .object(let members)? = try? JSONValue.parse(bytes) else { throw CorpusError.noSession("the session file is not a JSON object") }
        func integer(_ key: String) -> Int? { if case .int(let v)? = members[key] { Int(exactly: v) } else { nil } }
        guard let id = members["session"]?.stringValue, id.count == 32, Checksum.bytes(hex: id) != nil,
              let generation = integer("generation"), generation >= 1 else {
            throw CorpusError.noSession("the session file lacks a 32-digit session or a generation")
        }
        let labelSet = members["label_set"]?.stringValue, version = integer("version")
        guard (labelSet == nil) == (version == nil), version.map({ $0 >= 1 }) ?? true, labelSet.map({ !$0.isEmpty }) ?? true else {
            throw CorpusError.noSession("the session file's label_set and version go together (version ≥ 1)")
        }
        self.init(id: id, generation: generation, labelSet: labelSet, version: version)
    }

    /// The session open on the corpus in `directory`, or nil when none is.
    static func open(in directory: String) throws -> CorpusWriteSession? {
        guard let data = FileManager.default.contents(atPath: directory + "/" + fileName) else { return nil }
        return try CorpusWriteSession(decoding: [UInt8](data))
    }
}

extension CorpusWriter {
    /// Opens a write session (K-13) for one sample import (`labelSet` nil) or one new version of
    /// label set `labelSet`, whose number it allocates as ``importLabels(_:ids:into:codec:views:agent:source:privileges:normalize:clearance:provenance:now:afterShardCommit:)``
    /// does. Shard writes join it with ``importLabels(_:ids:into:shard:of:session:views:codec:agent:source:privileges:normalize:clearance:provenance:now:checkOnly:)``
    /// and ``importSamples(_:shard:of:session:mode:privileges:clearance:provenance:checkOnly:)``;
    /// ``commitSession()`` makes the write visible.
    ///
    /// - Throws: ``CorpusError/noSession(_:)`` when a session is already open.
    @discardableResult
    public func beginSession(labelSet: String? = nil) throws -> CorpusWriteSession {
        guard session == nil else { throw CorpusError.noSession("this writer already has session \(session!.record.id) open; commit or abandon it first") }
        if let labelSet, labelSet.isEmpty { throw LabelError.invalidName(labelSet) }
        var random = SystemRandomNumberGenerator()
        let id = (0..<2).map { _ in String(random.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
        let record = CorpusWriteSession(id: id, generation: manifest.generation, labelSet: labelSet,
                                        version: labelSet.map { (manifest.labelSets[$0] ?? 0) + 1 })
        let start = try shards.map { shard in try shard.read(clearance: .all) { try CorpusManifest.ShardState(of: $0).records } }
        try AtomicFile.replace(CorpusWriteSession.fileName, in: path, with: Array(record.document.serialized().utf8) + [0x0A])
        session = (record, start)
        return record
    }

    /// Commits the open session: for a label import, every shard must hold the session's version
    /// of the set, written since the session began (each shard's part, rows or none, is one shard
    /// write); then the next manifest generation records the version (or, for samples, the shards'
    /// states), and the session ends. Returns each shard's version record (empty for samples).
    ///
    /// - Throws: ``CorpusError/noSession(_:)`` with no session open, or when a shard's part is missing.
    @discardableResult
    public func commitSession() throws -> [LabelSetVersion] {
        guard let (record, start) = session else { throw CorpusError.noSession("this writer has no session open") }
        guard try CorpusManifest.read(from: path).generation == record.generation else {
            throw CorpusError.noSession("the manifest moved past generation \(record.generation) while session \(record.id) was open")
        }
        var next = manifest
        var parts: [LabelSetVersion] = []
        if let name = record.labelSet, let version = record.version {
            for (index, shard) in shards.enumerated() {
                let part = try shard.read(clearance: .all) { tx -> LabelSetVersion? in
                    guard let set = try tx.labelSetRecord(key: Array(name.utf8)), set.latest == version else { return nil }
                    let part = try tx.labelSetVersion(set: set.id, version: UInt32(version), name: name)
                    // Written in this session: its provenance record names the session and came
                    // after the shard's log as it began (a late write of an abandoned session
                    // names that one).
                    guard let written = part.provenance, written > UInt64(start[index]),
                          try tx.provenanceRecord(written)?.parameters[Self.sessionParameter] == record.id else { return nil }
                    return part
                }
                guard let part else {
                    throw CorpusError.noSession("shard \(index) (\(manifest.shards[index])) has not written its part of \(name) version \(version) in session \(record.id)")
                }
                parts.append(part)
            }
            next.labelSets[name] = version
        }
        try commit(next)
        abandonSession()
        return parts
    }

    /// Ends the open session without committing: shard writes can no longer join it, and what
    /// they wrote stays invisible (a label version the manifest never records is replaced by the
    /// set's next import; samples, which carry no versions, stay — K-10's rule).
    public func abandonSession() {
        guard session != nil else { return }
        session = nil
        try? FileManager.default.removeItem(atPath: path + "/" + CorpusWriteSession.fileName)
    }

    /// The provenance parameter a shard write of a session records the session's id in.
    static let sessionParameter = "session"

    /// Throws while a session is open: the writer's own writes would move the manifest under it.
    func requireNoSession() throws {
        if let (record, _) = session {
            throw CorpusError.noSession("session \(record.id) is open on this writer: commit or abandon it before writing otherwise")
        }
    }

    /// True while some writer, in any process, holds the lock of the corpus in `directory`. The
    /// probe asks for a shared lock, which a writer's exclusive one refuses, so probes never
    /// block each other (one may, for its instant, make a new writer find the corpus busy).
    static func isLocked(_ directory: String) -> Bool {
        let fd = open(directory + "/" + lockFileName, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Foundation.close(fd) }
        guard flock(fd, LOCK_SH | LOCK_NB) == 0 else { return true }
        flock(fd, LOCK_UN)
        return false
    }
}

extension CorpusWriter {
    /// Writes shard `index`'s part of label import `session` of the corpus at `path` (K-13), from
    /// any process, while the session's writer holds the corpus: discards the shard's rows of the
    /// set at versions ≥ the session's version, then imports `values` for `ids` (every one routed
    /// to this shard) as that version, one transaction. With `checkOnly` the transaction is
    /// abandoned after every check passed: a writer checks all shards' parts before any commits,
    /// so bad input writes nothing anywhere. Other arguments as ``importLabels(_:ids:into:codec:views:agent:source:privileges:normalize:clearance:provenance:now:afterShardCommit:)``.
    ///
    /// - Throws: ``CorpusError/noSession(_:)`` unless `session` is the corpus's open session, of
    ///   its manifest's generation, importing `name`, with its writer holding the lock;
    ///   ``CorpusError/wrongShard(id:shard:routed:)``; the import's errors.
    @discardableResult
    public static func importLabels(
        _ values: LabelValues, ids: [UInt64], into name: String, shard index: Int, of path: String, session: String,
        views: [AugmentedView]? = nil, codec: SoftLabelCodec? = nil, agent: String, source: TaintLabel = .public,
        privileges: Set<String> = [], normalize: Bool = false, clearance: Clearance, provenance: ProvenanceRecord? = nil,
        now: Date = Date(), checkOnly: Bool = false
    ) throws -> LabelSetVersion {
        try withSessionShard(index, of: path, session: session, ids: ids, clearance: clearance, checkOnly: checkOnly) { tx, open in
            guard let version = open.version, open.labelSet == name else {
                throw CorpusError.noSession("session \(session) imports \(open.labelSet.map { "label set \($0)" } ?? "samples"), not label set \(name)")
            }
            var record = provenance ?? ProvenanceRecord(activity: "label import", agent: agent)
            record.parameters[sessionParameter] = session
            let request = LabelPartRequest(name: name, version: version, codec: codec, agent: agent, source: source, privileges: privileges,
                                           normalize: normalize, provenance: record, now: now)
            return try request.write(values, ids: ids, views: views, in: tx)
        }
    }

    /// Writes shard `index`'s part of sample import `session` (K-13, K-10), as
    /// ``importLabels(_:ids:into:shard:of:session:views:codec:agent:source:privileges:normalize:clearance:provenance:now:checkOnly:)``
    /// writes a label part: every id routed to this shard, one transaction, abandoned with `checkOnly`.
    @discardableResult
    public static func importSamples(
        _ batch: SampleBatch, shard index: Int, of path: String, session: String, mode: PutMode, privileges: Set<String> = [],
        clearance: Clearance, provenance: ProvenanceRecord? = nil, checkOnly: Bool = false
    ) throws -> PutSummary {
        try withSessionShard(index, of: path, session: session, ids: batch.ids, clearance: clearance, checkOnly: checkOnly) { tx, open in
            guard open.labelSet == nil else { throw CorpusError.noSession("session \(session) imports label set \(open.labelSet!), not samples") }
            var record = provenance
            record?.parameters[sessionParameter] = session
            return try tx.putPart(batch, mode: mode, privileges: privileges, provenance: record)
        }
    }

    /// Opens shard `index` for writing after checking that `session` may write it (the open
    /// session, of the current generation, its writer alive) and that every id routes to it; runs
    /// `body` in one write transaction, committed unless `checkOnly`.
    static func withSessionShard<T>(
        _ index: Int, of path: String, session: String, ids: [UInt64], clearance: Clearance, checkOnly: Bool,
        _ body: (WriteTransaction, CorpusWriteSession) throws -> T
    ) throws -> T {
        let (manifest, open) = try checkSession(session, of: path)
        guard manifest.shards.indices.contains(index) else {
            throw InputError(file: path, reason: "shard \(index) is not one of its \(manifest.shards.count) shards")
        }
        for id in ids where manifest.shard(of: id) != index {
            throw CorpusError.wrongShard(id: id, shard: index, routed: manifest.shard(of: id))
        }
        let store = try Store(opening: path + "/" + manifest.shards[index])
        defer { store.close() }
        func write(_ tx: WriteTransaction) throws -> T {
            // Again with the shard's writer lock held: the session may have ended while this
            // write waited for it (a commit then still refuses a part recorded under another session).
            _ = try checkSession(session, of: path)
            try tx.validate(clearance)
            return try body(tx, open)
        }
        return checkOnly ? try store.checkWrite(clearance: clearance, write) : try store.write(clearance: clearance, write)
    }
}

extension CorpusWriter {
    /// The manifest and the open session, once `session` is known to be it: of the manifest's
    /// generation, with its writer holding the lock.
    static func checkSession(_ session: String, of path: String) throws -> (CorpusManifest, CorpusWriteSession) {
        let manifest = try CorpusManifest.read(from: path)
        guard let open = try CorpusWriteSession.open(in: path), open.id == session else {
            throw CorpusError.noSession("\(session) is not the open session of \(path) (it was committed or abandoned, or never begun)")
        }
        guard isLocked(path) else { throw CorpusError.noSession("the writer of session \(session) is gone: nothing holds \(path)/\(lockFileName)") }
        guard open.generation == manifest.generation else {
            throw CorpusError.noSession("session \(session) began on manifest generation \(open.generation); the manifest is at \(manifest.generation)")
        }
        return (manifest, open)
    }
}
