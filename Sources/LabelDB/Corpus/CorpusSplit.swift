import Foundation

/// How a corpus is split from a store: by the hash rule, or into ranges of equal sample counts.
public enum SplitRule: String, Sendable, CaseIterable {
    /// xxh3-64 of each id, modulo the shard count (K-3).
    case hash
    /// Half-open id ranges holding (about) equal numbers of the stored samples (K-4); the first
    /// starts at 0 and the last ends at 2⁶⁴ − 1, so later ids below or above the stored ones
    /// still route.
    case range
}

extension CorpusManifest {
    /// Splits the store at `source` into a new corpus at `destination` (a directory that must not
    /// exist, or be empty) of `count` shards, and returns its manifest.
    ///
    /// Each shard starts as a consistent copy of the whole store, then deletes the samples the
    /// rule routes elsewhere and packs its slots, in one write transaction; a compacting copy
    /// then drops the freed pages. So every record a shard keeps is the source's, byte for byte
    /// where its key did not change: samples, label rows of every version, taint labels, the tag
    /// registry (identical in every shard), projectors and their corrections, and the provenance
    /// log, to which each shard appends one `shard` record. The manifest is written last: until
    /// it is, the directory is not a corpus, and a failure removes what was written.
    ///
    /// - Throws: ``TaintError/clearanceTooNarrow(_:)`` unless `clearance` sees every sample (a
    ///   split copies everything); ``CorpusError/invalid(_:)`` for a shard count below 1, or a
    ///   range split of fewer samples than shards.
    public static func split(
        store source: String, into destination: String, shards count: Int, rule: SplitRule, clearance: Clearance, agent: String
    ) throws -> CorpusManifest {
        guard count >= 1, count <= 65_536 else { throw CorpusError.invalid("a corpus has 1 to 65,536 shards, not \(count)") }
        let store = try Store(opening: source, options: Store.Options(readOnly: true))
        defer { store.close() }
        let (ids, labelSets, projectors) = try store.read(clearance: clearance) { tx in
            guard try tx.seesEverything else {
                throw TaintError.clearanceTooNarrow("a split copies every record; it needs a clearance that sees the whole store (the clearance 'all')")
            }
            return (try tx.ids(), Dictionary(uniqueKeysWithValues: try tx.labelSets().map { ($0.name, $0.latest) }),
                    Dictionary(uniqueKeysWithValues: try tx.projectors().map { ($0.name, $0.versions.count) }))
        }
        let names = shardNames(count)
        let schema = store.schema
        var manifest = CorpusManifest(dimension: schema.dimension, elementType: schema.elementType, classes: schema.classes,
                                      shards: names, routing: try routing(rule, ids: ids, shards: count), labelSets: labelSets,
                                      splitVersions: labelSets, projectors: projectors)
        let created = try Store.prepareEmptyDirectory(destination)
        do {
            var routed = [[UInt64]](repeating: [], count: count)
            for id in ids { routed[manifest.shard(of: id)!].append(id) }
            for (index, name) in names.enumerated() {
                let others = routed.enumerated().filter { $0.offset != index }.flatMap(\.element).sorted()
                manifest.shardStates[index] = try makeShard(from: store, at: destination + "/" + name, deleting: others, provenance: ProvenanceRecord(
                    activity: "shard", agent: agent, used: [ProvenanceEntity(kind: "store", name: source)],
                    parameters: ["shard": "\(index)", "shards": "\(count)", "rule": rule.rawValue, "kept": "\(routed[index].count)",
                                 "deleted": "\(others.count)"]))
            }
            try manifest.write(to: destination)
            return manifest
        } catch {
            removeWritten(at: destination, created: created)
            throw error
        }
    }

    /// Creates an empty corpus at `path` (a directory that must not exist, or be empty): `count`
    /// empty stores of `schema`, routed by hash, and the manifest, written last. Samples and
    /// labels come in through ``CorpusWriter``.
    ///
    /// - Throws: ``CorpusError/invalid(_:)`` for a shard count outside 1…65,536; the stores' errors.
    @discardableResult
    public static func create(at path: String, schema: Schema, shards count: Int) throws -> CorpusManifest {
        guard count >= 1, count <= 65_536 else { throw CorpusError.invalid("a corpus has 1 to 65,536 shards, not \(count)") }
        let names = shardNames(count)
        var manifest = CorpusManifest(dimension: schema.dimension, elementType: schema.elementType, classes: schema.classes, shards: names, routing: .hash)
        let created = try Store.prepareEmptyDirectory(path)
        do {
            for (index, name) in names.enumerated() {
                let store = try Store.create(at: path + "/" + name, schema: schema)
                defer { store.close() }
                manifest.shardStates[index] = try store.read(clearance: .all) { try ShardState(of: $0) }
            }
            try manifest.write(to: path)
            return manifest
        } catch {
            removeWritten(at: path, created: created)
            throw error
        }
    }

    /// Undoes a failed split or create: removes the directory it made, or empties the one it was
    /// given, so nothing half-written looks like a corpus.
    static func removeWritten(at path: String, created: Bool) {
        let fm = FileManager.default
        if created { try? fm.removeItem(atPath: path) } else {
            for item in (try? fm.contentsOfDirectory(atPath: path)) ?? [] { try? fm.removeItem(atPath: path + "/" + item) }
        }
    }

    /// The shards' directory names: `shard-000`…, at least three digits.
    static func shardNames(_ count: Int) -> [String] {
        let width = max(3, String(count - 1).count)
        return (0..<count).map { "shard-" + String(repeating: "0", count: width - String($0).count) + String($0) }
    }

    /// The routing of a new corpus: hash, or ranges cut at the quantiles of the stored ids.
    static func routing(_ rule: SplitRule, ids: [UInt64], shards count: Int) throws -> Routing {
        guard rule == .range else { return .hash }
        guard ids.count >= count else {
            throw CorpusError.invalid("a range split cuts the stored ids into \(count) ranges of equal counts; the store holds \(ids.count) samples")
        }
        if let last = ids.last, last == .max { throw CorpusError.invalid("id \(UInt64.max) lies past every half-open range; split it by hash") }
        let cuts = (1..<count).map { ids[$0 * ids.count / count] }
        let lows = [0] + cuts, highs = cuts + [UInt64.max]
        return .range(zip(lows, highs).map { $0..<$1 })
    }

    /// Writes one shard: a copy of the store without `deleting`, `adjust`ed, slots packed, freed
    /// pages dropped; returns its state for the manifest.
    static func makeShard(
        from store: Store, at path: String, deleting doomed: [UInt64], provenance: ProvenanceRecord, adjust: ((WriteTransaction) throws -> Void)? = nil
    ) throws -> ShardState {
        let staging = path + ".staging"
        try store.backup(to: staging, clearance: .all)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let copy = try Store(opening: staging)
        defer { copy.close() }
        try copy.write(clearance: .all) { tx in
            try tx.delete(doomed)
            try adjust?(tx)
            try tx.deleteCorrectionsOfAbsentSamples()
            try tx.packSlots()
            tx.describe(provenance)
        }
        try copy.backup(to: path, clearance: .all)
        return try copy.read(clearance: .all) { try ShardState(of: $0) }
    }
}

extension CorpusManifest.ShardState {
    /// The state of the shard `tx` reads: its provenance log's length and head.
    init(of tx: Transaction) throws {
        let log = try tx.verifyProvenanceLog()
        if let bad = log.firstBad { throw CorpusError.invalid("shard \(tx.store.path): provenance record \(bad.id) \(bad.reason)") }
        self.init(records: log.records, head: log.head)
    }
}

extension WriteTransaction {
    /// Removes every projector version's stored corrections of samples the store does not hold:
    /// a shard keeps only its own samples' corrections. (A delete leaves a sample's corrections,
    /// keyed by id and never read again in one store; a split would copy them into every shard.)
    func deleteCorrectionsOfAbsentSamples() throws {
        var doomed: [[UInt8]] = []
        try walk(.projectorCorrections, from: nil) { key, _ in
            guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .projectorCorrections) }
            if try withValue(.samples, key: BigEndianKey.u64(key, at: 8), { $0 == nil }) { doomed.append(Array(key)) }
            return true
        }
        for key in doomed { try delete(.projectorCorrections, key: key) }
    }
}
