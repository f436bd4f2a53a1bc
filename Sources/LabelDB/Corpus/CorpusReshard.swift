import Foundation

extension CorpusManifest {
    /// Re-shards the corpus at `source` into a new corpus at `destination` of `count` shards, by
    /// `rule` (the source's when nil).
    ///
    /// When the rule stays and `count` is a multiple of the source's N, each old shard is split
    /// further, so every record a new shard keeps is its parent's, byte for byte where its key
    /// did not change:
    ///
    /// - `hash`: `count` must be a multiple of the source's N. An id's new shard j = h mod count
    ///   has j mod N = h mod N, its old shard: old shard i splits into shards i, i + N, i + 2N, ….
    /// - `range`: `count` must be a multiple of N; each old range [lo, hi) is cut at the
    ///   quantiles of its own stored ids into count / N ranges (new shards i·k … i·k + k − 1).
    ///
    /// Otherwise (fewer shards, a count that is not a multiple, another rule) shards are merged
    /// (``ShardMerge``): new shard j starts as a copy of the old shard that holds most of its
    /// samples and appends, record by record, the samples other old shards hold for it; `range`
    /// cuts at the quantiles of all stored ids, as a split of one store does.
    ///
    /// Each new shard starts as a copy of its parent, deletes the samples routed to its siblings,
    /// drops what the parent held beyond the manifest (label-set and projector versions a writer
    /// never committed), packs its slots and appends a `shard` record to its parent's log. Every
    /// committed label-set version's record then states the whole corpus's `rows`, `soft_bytes`,
    /// `views` and fidelity, as after a split (`split_versions` = `label_sets`), and keeps the new
    /// shard's own `labelled`. The source is held with its writer's lock meanwhile, so no import
    /// changes it under the copy; the manifest is written last.
    ///
    /// - Throws: ``CorpusError/invalid(_:)`` for a count outside 1…65,536, or a range shard with
    ///   fewer samples than it is cut into; ``CorpusError/shardsDisagree(_:)`` when shards to be
    ///   merged hold different label sets, projectors or heads; ``CorpusError/busy(_:)`` while
    ///   a writer holds the source;
    ///   ``TaintError/clearanceTooNarrow(_:)`` unless `clearance` sees everything.
    public static func reshard(
        corpus source: String, into destination: String, shards count: Int, rule: SplitRule?, clearance: Clearance, agent: String
    ) throws -> CorpusManifest {
        let writer = try CorpusWriter(opening: source)
        defer { writer.close() }
        let old = writer.manifest, n = old.shards.count
        let oldRule: SplitRule = old.ruleName == "range" ? .range : .hash
        guard count >= 1, count <= 65_536 else { throw CorpusError.invalid("a corpus has 1 to 65,536 shards, not \(count)") }
        let reader = try Corpus(opening: source)
        defer { reader.close() }
        let whole = try reader.labelSets(clearance: clearance)
        let k = max(count / n, 1)
        // The ids of each old shard, and the routing that cuts each into k.
        let held = try reader.shards.map { shard in
            try shard.read(clearance: clearance) { tx in
                guard try tx.seesEverything else {
                    throw TaintError.clearanceTooNarrow("re-sharding copies every record; it needs a clearance that sees the whole corpus (the clearance 'all')")
                }
                return try tx.ids()
            }
        }
        // A version's taint is the join over every old shard's record of it (K-16: shards an
        // older writer wrote may differ).
        let projectorTaints = try ProjectorVersionKey.joinedTaints(of: reader.shards, committed: old)
        let newRule = rule ?? oldRule
        guard newRule == oldRule, count % n == 0 else {
            return try merge(reader, manifest: old, held: held, into: destination, shards: count, rule: newRule, whole: whole,
                             projectorTaints: projectorTaints, agent: agent)
        }
        let routing = try refinedRouting(old.routing, held: held, by: k)
        var manifest = CorpusManifest(dimension: old.dimension, elementType: old.elementType, classes: old.classes, shards: shardNames(count),
                                      routing: routing, labelSets: old.labelSets, splitVersions: old.labelSets, projectors: old.projectors)
        let created = try Store.prepareEmptyDirectory(destination)
        do {
            for (parent, shard) in reader.shards.enumerated() {
                for child in children(of: parent, oldCount: n, by: k, rule: oldRule) {
                    let doomed = held[parent].filter { manifest.shard(of: $0) != child }
                    manifest.shardStates[child] = try makeShard(
                        from: shard, at: destination + "/" + manifest.shards[child], deleting: doomed,
                        provenance: ProvenanceRecord(activity: "shard", agent: agent, used: [ProvenanceEntity(kind: "corpus", name: source)],
                                                     parameters: ["shard": "\(child)", "shards": "\(count)", "rule": oldRule.rawValue,
                                                                  "from_shard": "\(parent)", "from_generation": "\(old.generation)",
                                                                  "kept": "\(held[parent].count - doomed.count)", "deleted": "\(doomed.count)"])
                    ) { tx in
                        try tx.keepCommitted(old, whole: whole, projectorTaints: projectorTaints)
                    }
                }
            }
            try manifest.write(to: destination)
            return manifest
        } catch {
            removeWritten(at: destination, created: created)
            throw error
        }
    }

    /// Re-shards by merging (see ``reshard(corpus:into:shards:rule:clearance:agent:)``): the
    /// samples of old shard i routed to new shard j are copied from i's read transaction into
    /// j, which starts as a copy of the old shard holding most of them.
    private static func merge(
        _ reader: Corpus, manifest old: CorpusManifest, held: [[UInt64]], into destination: String, shards count: Int, rule: SplitRule,
        whole: [LabelSet], projectorTaints: [ProjectorVersionKey: TaintLabel], agent: String
    ) throws -> CorpusManifest {
        var manifest = CorpusManifest(dimension: old.dimension, elementType: old.elementType, classes: old.classes, shards: shardNames(count),
                                      routing: try routing(rule, ids: held.flatMap { $0 }.sorted(), shards: count), labelSets: old.labelSets,
                                      splitVersions: old.labelSets, projectors: old.projectors)
        // routed[j][i]: the ids of old shard i that new shard j holds.
        var routed = [[[UInt64]]](repeating: [[UInt64]](repeating: [], count: held.count), count: count)
        for (i, ids) in held.enumerated() { for id in ids { routed[manifest.shard(of: id)!][i].append(id) } }
        let created = try Store.prepareEmptyDirectory(destination)
        do {
            for j in 0..<count {
                let base = routed[j].indices.max { (routed[j][$0].count, $1) < (routed[j][$1].count, $0) }!
                let sources = routed[j].indices.filter { $0 != base && !routed[j][$0].isEmpty }
                let doomed = held[base].filter { manifest.shard(of: $0) != j }
                var parameters = ["shard": "\(j)", "shards": "\(count)", "rule": rule.rawValue, "from_shard": "\(base)",
                                  "from_generation": "\(old.generation)", "kept": "\(routed[j][base].count)", "deleted": "\(doomed.count)"]
                if !sources.isEmpty {
                    parameters["merged_shards"] = sources.map(String.init).joined(separator: ",")
                    parameters["merged_heads"] = sources.map { old.shardStates[$0].head }.joined(separator: ",")
                    parameters["merged"] = "\(sources.reduce(0) { $0 + routed[j][$1].count })"
                }
                let provenance = ProvenanceRecord(activity: "shard", agent: agent, used: [ProvenanceEntity(kind: "corpus", name: reader.path)],
                                                  parameters: parameters)
                manifest.shardStates[j] = try makeShard(from: reader.shards[base], at: destination + "/" + manifest.shards[j], deleting: doomed,
                                                        provenance: provenance) { tx in
                    try tx.keepCommitted(old, whole: whole, projectorTaints: projectorTaints)
                    var merge = try ShardMerge(into: tx, committed: old)
                    for i in sources {
                        try reader.shards[i].read(clearance: .all) { source in try merge.append(routed[j][i], from: source) }
                    }
                    try merge.finish()
                }
            }
            try manifest.write(to: destination)
            return manifest
        } catch {
            removeWritten(at: destination, created: created)
            throw error
        }
    }

    /// The new shards old shard `parent` splits into.
    static func children(of parent: Int, oldCount n: Int, by k: Int, rule: SplitRule) -> [Int] {
        switch rule {
        case .hash: (0..<k).map { parent + n * $0 }
        case .range: (0..<k).map { parent * k + $0 }
        }
    }

    /// The routing that cuts each shard of `routing` into `k`: hash stays hash (the count does
    /// it); each range is cut at the quantiles of the ids its shard holds.
    static func refinedRouting(_ routing: Routing, held: [[UInt64]], by k: Int) throws -> Routing {
        guard case .range(let ranges) = routing, k > 1 else { return routing }
        var refined: [Range<UInt64>] = []
        for (index, range) in ranges.enumerated() {
            let ids = held[index]
            guard ids.count >= k else {
                throw CorpusError.invalid("shard \(index) holds \(ids.count) samples: too few to cut its range into \(k) of equal counts")
            }
            let cuts = (1..<k).map { ids[$0 * ids.count / k] }
            let lows = [range.lowerBound] + cuts, highs = cuts + [range.upperBound]
            refined += zip(lows, highs).map { $0..<$1 }
        }
        return .range(refined)
    }
}

extension WriteTransaction {
    /// Drops what a shard holds beyond `manifest` (label sets and projectors it does not name,
    /// versions above its own), and writes into each committed label-set version's record the
    /// figures of the whole corpus (`whole`, as ``Corpus/labelSets(clearance:)`` reads it),
    /// keeping this shard's own `labelled`; each committed projector version takes the join of
    /// its taint over the old shards (`projectorTaints`, K-16).
    func keepCommitted(_ manifest: CorpusManifest, whole: [LabelSet], projectorTaints: [ProjectorVersionKey: TaintLabel]) throws {
        for name in try names(in: .labelSets) {
            try discardLabelVersions(name, from: (manifest.labelSets[name] ?? 0) + 1)
        }
        for name in try names(in: .projectors) {
            try discardProjectorVersions(name, from: (manifest.projectors[name] ?? 0) + 1)
        }
        _ = try restrictProjectorVersions(to: projectorTaints)
        for set in whole {
            let nameKey = Array(set.name.utf8)
            guard let record = try labelSetRecord(key: nameKey) else { continue }
            for (index, figures) in set.versions.enumerated() {
                let key = LabelRecord.versionKey(set: record.id, version: UInt32(index + 1))
                var version = try labelSetVersion(set: record.id, version: UInt32(index + 1), name: set.name)
                (version.rows, version.softBytes, version.views, version.fidelity) = (figures.rows, figures.softBytes, figures.views, figures.fidelity)
                try put(.labelVersions, key: key, bytes: LabelRecord.encodeJSON(version, key: key))
            }
        }
    }
}
