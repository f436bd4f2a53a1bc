import Foundation

/// The rows of a projector fit over a corpus's shards, in id order — the order one store's fit
/// reads the same samples in, so the seeded split, the minibatches and the rank search's sample
/// pick the same samples as a fit of the whole store would. Row i is row `localRow[i]` of shard
/// `shardOf[i]`'s rows; each shard is a part (``FitRows/partCount``), so the closed form's sums,
/// the evaluations and the corrections are taken per shard on a thread each and then added.
struct CorpusFitRows<Shard: ShardFitRows>: FitRows {
    let shards: [Shard]
    let shardOf: [Int32]
    let localRow: [Int32]
    let dimension: Int
    let classes: Int

    /// The rows of `shards` merged by id (each shard's are in id order; ids are global, so
    /// none repeats).
    init(_ shards: [Shard], dimension: Int, classes: Int) {
        var merged: [(id: UInt64, shard: Int32, row: Int32)] = []
        merged.reserveCapacity(shards.reduce(0) { $0 + $1.count })
        for (s, shard) in shards.enumerated() {
            for (row, id) in shard.ids.enumerated() { merged.append((id, Int32(s), Int32(row))) }
        }
        merged.sort { $0.id < $1.id }
        self.shards = shards
        shardOf = merged.map(\.shard)
        localRow = merged.map(\.row)
        self.dimension = dimension
        self.classes = classes
    }

    var count: Int { shardOf.count }
    var partCount: Int { shards.count }
    func part(of row: Int) -> Int { Int(shardOf[row]) }

    /// The id of row `row`.
    func id(of row: Int) -> UInt64 { shards[Int(shardOf[row])].ids[Int(localRow[row])] }

    // A pass over one part runs on its shard, over the shard's own rows (the same rows in the
    // same order, so the same sums).
    private func local(_ rows: [Int]) -> (shard: Shard, rows: [Int]) {
        (shards[rows.first.map { Int(shardOf[$0]) } ?? 0], rows.map { Int(localRow[$0]) })
    }

    func partSums(_ rows: [Int]) throws -> (x: [Double], y: [Double]) {
        let part = local(rows)
        return try part.shard.partSums(part.rows)
    }

    func partCentredProducts(_ rows: [Int], meanX: [Float], meanY: [Float]) throws -> (xx: [Float], xy: [Float]) {
        let part = local(rows)
        return try part.shard.partCentredProducts(part.rows, meanX: meanX, meanY: meanY)
    }

    func partEvaluation(_ model: ProjectorModel, rows: [Int], head: [Float]?) throws -> PartEvaluation {
        let part = local(rows)
        return try part.shard.partEvaluation(model, rows: part.rows, head: head)
    }

    func partCorrections(_ model: ProjectorModel, rows: [Int], head: [Float]?, maxKL: Double, requireTop1: Bool) throws -> [FoundCorrection] {
        let part = local(rows)
        // The shard names its own rows: each back to the corpus's row it came from.
        let corpusRow = Dictionary(uniqueKeysWithValues: zip(part.rows, rows))
        return try part.shard.partCorrections(model, rows: part.rows, head: head, maxKL: maxKL, requireTop1: requireTop1).map {
            FoundCorrection(row: corpusRow[$0.row]!, codec: $0.codec, bytes: $0.bytes)
        }
    }

    func load(_ rows: ArraySlice<Int>, embeddings: UnsafeMutablePointer<Float>, teacher: UnsafeMutablePointer<Float>) throws {
        let d = dimension, c = classes
        // Rows of one shard (every chunk of a per-shard pass) are read straight into place.
        if let first = rows.first, rows.allSatisfy({ shardOf[$0] == shardOf[first] }) {
            return try shards[Int(shardOf[first])].load(rows.map { Int(localRow[$0]) }[...], embeddings: embeddings, teacher: teacher)
        }
        // Otherwise (a minibatch across shards) each shard's rows are read, on a thread each (a
        // shard elsewhere is a round trip), then put in place.
        var positions = [[Int]](repeating: [], count: shards.count)
        for (position, row) in rows.enumerated() { positions[Int(shardOf[row])].append(position) }
        let base = rows.startIndex
        let local = positions.map { wanted in wanted.map { Int(localRow[rows[base + $0]]) } }
        let loaded = try Parallel.map(shards.count) { s -> (x: [Float], p: [Float]) in
            var x = [Float](repeating: 0, count: local[s].count * d), p = [Float](repeating: 0, count: local[s].count * c)
            guard !local[s].isEmpty else { return (x, p) }
            try x.withUnsafeMutableBufferPointer { xv in
                try p.withUnsafeMutableBufferPointer { try shards[s].load(local[s][...], embeddings: xv.baseAddress!, teacher: $0.baseAddress!) }
            }
            return (x, p)
        }
        for (s, wanted) in positions.enumerated() where !wanted.isEmpty {
            let (x, p) = loaded[s]
            for (i, position) in wanted.enumerated() {
                x.withUnsafeBufferPointer { (embeddings + position * d).update(from: $0.baseAddress! + i * d, count: d) }
                p.withUnsafeBufferPointer { (teacher + position * c).update(from: $0.baseAddress! + i * c, count: c) }
            }
        }
    }
}

extension CorpusWriter {
    /// Fits the next version of projector `name` to a soft label set of the corpus, as
    /// ``Store/fitProjector(_:from:options:head:maxKL:requireTop1:budget:agent:clearance:progress:)``
    /// fits one store's, and records it in every shard and then in the manifest.
    ///
    /// The fit reads every shard in one read transaction each (one snapshot of the corpus), with
    /// its rows in id order, so it fits the rows a fit of the same samples in one store fits, in
    /// the same order. XᵀX, XᵀY, the evaluations and the corrections are sums over the shards,
    /// each shard's taken on a thread of its own; the gradient refinement reads its minibatches
    /// across the shards. Each shard then gets the parameters, the samples of its own that were
    /// fitted and their corrections, in a version record that states the whole fit's figures;
    /// the manifest records the version last (K-2), so a writer stopped between shards leaves the
    /// corpus reading the projector as before, and the next fit replaces what it left.
    ///
    /// With `parts`, every pass over a shard's rows is sent to that shard's ``FitPartServer``
    /// through the executor instead of running on a thread here (K-17); the figures are the same up to BLAS's rounding.
    ///
    /// - Parameter afterShardCommit: called after shard i commits, before the next (tests).
    /// - Throws: ``ProjectorError``, ``LabelError``; ``CorpusError/shardsDisagree(_:)`` when the shards'
    ///   copies of the base head differ. Nothing is written on failure.
    @discardableResult
    public func fitProjector(
        _ name: String, from reference: LabelSetReference, options: ProjectorFitOptions, head headName: String? = nil,
        maxKL: Double? = nil, requireTop1: Bool = false, budget: RankBudget? = nil, agent: String = "labeldb", clearance: Clearance,
        progress: ((String, Double) -> Void)? = nil, parts: FitPartExecutor? = nil, afterShardCommit: ((Int) throws -> Void)? = nil
    ) throws -> ProjectorVersion {
        try requireNoSession()
        try ProjectorNames.check(name)
        if let maxKL { guard maxKL > 0, maxKL.isFinite else { throw ProjectorError.invalidOption("the KL bound (max KL) must be a positive number") } }
        // Only what the manifest has committed exists for a corpus reader.
        guard let committed = manifest.labelSets[reference.name] else { throw LabelError.unknownLabelSet(reference.name) }
        let version = reference.version ?? committed
        guard version >= 1, version <= committed else { throw LabelError.unknownVersion(set: reference.name, version: version, latest: committed) }
        let pinned = LabelSetReference(name: reference.name, version: version)
        let fitted = try withReadTransactions(on: shards, clearance: clearance) { txs in
            try Self.fit(txs, from: pinned, options: options, head: headName, maxKL: maxKL, requireTop1: requireTop1, budget: budget, progress: progress,
                         parts: parts)
        }
        let next = (manifest.projectors[name] ?? 0) + 1
        let written = try writeShards(clearance: clearance, afterShardCommit: afterShardCommit) { index, tx -> ProjectorVersion in
            try tx.discardProjectorVersions(name, from: next)
            let info = try tx.recordProjectorVersion(name, fitted.parts[index], maxKL: maxKL, requireTop1: requireTop1, budget: budget, agent: agent,
                                                     totals: fitted.totals)
            guard info.version == next else {
                throw CorpusError.shardsDisagree("\(tx.store.path): projector \(name) took version \(info.version), the manifest allocated \(next)")
            }
            return info
        }
        var manifest = self.manifest
        manifest.projectors[name] = next
        try commit(manifest)
        return written[0]
    }

    /// Fits across the shards read by `txs`: one ``FittedProjector`` per shard (its samples and
    /// corrections, the common model, report and taint) and the whole fit's figures.
    private static func fit(
        _ txs: [Transaction], from reference: LabelSetReference, options: ProjectorFitOptions, head headName: String?, maxKL: Double?,
        requireTop1: Bool, budget: RankBudget?, progress: ((String, Double) -> Void)?, parts executor: FitPartExecutor?
    ) throws -> (parts: [FittedProjector], totals: ProjectorTotals) {
        var sources: [StoredFitRows] = [], slots: [[UInt64]] = [], resolved: [(set: LabelSet, version: Int)] = []
        var taint = TaintLabel.bottom
        for tx in txs {
            let (set, version) = try tx.resolveFitSource(reference)
            let part = try tx.softLabelledSamples(set: set, version: version)
            sources.append(StoredFitRows(tx, ids: part.ids, set: set, version: version))
            slots.append(part.slots)
            resolved.append((set, version))
            taint = taint.join(part.taint)
        }
        let (d, c) = (txs[0].store.schema.dimension, txs[0].store.schema.classes.count)
        guard sources.contains(where: { $0.count > 0 }) else { throw ProjectorError.noRows("label set `\(reference.name)@\(reference.version ?? 0)` has no soft labels") }
        let head = try headName.map { name -> BaseHead in
            let heads = try txs.map { try $0.fitHead(named: name) }
            guard heads.allSatisfy({ $0.contentHash == heads[0].contentHash && $0.taint == heads[0].taint }) else {
                throw CorpusError.shardsDisagree("their copies of base head \(name) differ")
            }
            return heads[0]
        }
        if let head { taint = taint.join(head.taint) }
        // The fit, and each correction's shard and id.
        func run<Shard: ShardFitRows>(_ shards: [Shard]) throws -> (ProjectorFitOptions, ProjectorFitter.Outcome, [[(id: UInt64, codec: UInt8, bytes: [UInt8])]]) {
            let rows = CorpusFitRows(shards, dimension: d, classes: c)
            let (chosen, outcome) = try ProjectorFitter.fitForRecording(rows, head: head?.values, options: options, maxKL: maxKL, requireTop1: requireTop1,
                                                                         budget: budget, progress: progress)
            var corrections = [[(id: UInt64, codec: UInt8, bytes: [UInt8])]](repeating: [], count: shards.count)
            for correction in outcome.corrections {
                corrections[rows.part(of: correction.row)].append((rows.id(of: correction.row), correction.codec, correction.bytes))
            }
            return (chosen, outcome, corrections)
        }
        let (chosen, outcome, corrections) = try executor.map { execute in
            try run(sources.indices.map { s in
                RemoteShardRows(shard: s, ids: sources[s].ids, source: LabelSetReference(name: resolved[s].set.name, version: resolved[s].version),
                                clearance: txs[s].clearance, snapshot: txs[s].snapshotID, dimension: d, classes: c, execute: execute)
            })
        } ?? run(sources)
        let parts = try txs.indices.map { s in
            FittedProjector(options: chosen, set: resolved[s].set, version: resolved[s].version, model: outcome.model, report: outcome.report,
                            head: head, headName: headName, sequence: try txs[s].storedSequence(), taint: taint, slots: slots[s],
                            corrections: corrections[s])
        }
        let totals = ProjectorTotals(samples: sources.reduce(0) { $0 + $1.count }, corrections: outcome.corrections.count,
                                     correctionBytes: outcome.corrections.reduce(0) { $0 + ProjectorCodec.correctionRecordBytes(encoded: $1.bytes.count) })
        return (parts, totals)
    }
}

extension WriteTransaction {
    /// Removes versions `first`… of projector `name` — their parameters, fitted samples,
    /// corrections and records — as if never fitted (the projector itself when `first` is 1):
    /// what a corpus's shard does with a fit the manifest never recorded, before it writes that
    /// version again. Returns the versions removed.
    @discardableResult
    func discardProjectorVersions(_ name: String, from first: Int) throws -> Int {
        let nameKey = Array(name.utf8)
        guard var record = try projectorRecord(key: nameKey), record.latest >= first, first >= 1 else { return 0 }
        try deleteVersions(from: first, of: record.id, in: [(.projectorFitted, 4, 16), (.projectorCorrections, 4, 16), (.projectorParameters, 4, 8),
                                                         (.projectorVersions, 4, 8)])
        let removed = record.latest - first + 1
        if first == 1 {
            try delete(.projectors, key: nameKey)
        } else {
            record.latest = first - 1
            try put(.projectors, key: nameKey, bytes: LabelRecord.encodeJSON(record, key: nameKey))
        }
        noteChange("projector_versions_discarded", removed)
        return removed
    }
}
