import Foundation

/// The one writer of a sharded corpus: it holds the corpus's lock file (`corpus.lock`, an
/// exclusive `flock`) while open, writes each shard in a transaction of its own, and makes the
/// result visible by replacing the manifest (K-2).
///
/// A label import allocates its version from the manifest (the set's committed version + 1),
/// checks every shard's part without writing (so bad input writes nothing anywhere), then
/// commits shard by shard, each shard first discarding rows an earlier, interrupted import left
/// under that version; the manifest records the version last. A crash between shards therefore
/// leaves the corpus reading as before: readers see only the manifest's versions.
public final class CorpusWriter {
    /// The corpus directory.
    public let path: String
    /// The manifest as this writer last wrote (or read) it.
    public private(set) var manifest: CorpusManifest
    let shards: [Store]
    private let lock: Int32
    /// The write session this writer has open (K-13), with each shard's log length when it began.
    var session: (record: CorpusWriteSession, startRecords: [Int])?

    /// The lock file's name inside the corpus directory.
    public static let lockFileName = "corpus.lock"

    /// Opens the corpus at `path` for writing.
    ///
    /// - Throws: ``CorpusError/busy(_:)`` while another writer (in any process) has it open;
    ///   the manifest's and the shards' errors.
    public init(opening path: String) throws {
        let lockPath = path + "/" + Self.lockFileName
        guard FileManager.default.fileExists(atPath: path + "/" + CorpusManifest.fileName) else { throw CorpusError.notACorpus(path) }
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError.io(path: lockPath, reason: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            Foundation.close(fd)
            throw CorpusError.busy(path)
        }
        var opened: [Store] = []
        do {
            manifest = try CorpusManifest.read(from: path)
            for name in manifest.shards { opened.append(try Store(opening: path + "/" + name)) }
        } catch {
            for shard in opened { shard.close() }
            Foundation.close(fd)
            throw error
        }
        self.path = path
        self.shards = opened
        lock = fd
        // A session file left by a writer that died names a session no shard write may join now.
        for leftover in [CorpusWriteSession.fileName, CorpusWriteSession.fileName + ".tmp"] {
            try? FileManager.default.removeItem(atPath: path + "/" + leftover)
        }
        // Tags a writer that died between shards left in some shards only (K-14).
        do { try unifyTagRegistries() } catch {
            close()
            throw error
        }
    }

    /// Ends any open write session without committing it, closes the shards and releases the lock.
    public func close() {
        abandonSession()
        for shard in shards { shard.close() }
        Foundation.close(lock)
    }

    /// Imports one new version of label set `name` across the shards, each row into the shard
    /// of its id, and returns each shard's version record (every shard gets the version, with
    /// no rows where none routes to it, so version numbers agree). Arguments as
    /// ``WriteTransaction/importLabels(_:ids:into:codec:views:agent:source:privileges:normalize:now:)``.
    ///
    /// - Parameter afterShardCommit: called after shard i commits, before the next (tests use it
    ///   to stop the writer between shards).
    /// - Throws: the import's errors, from checking every shard's part before any is written.
    @discardableResult
    public func importLabels(
        _ values: LabelValues, ids: [UInt64], into name: String, codec: SoftLabelCodec? = nil, views: [AugmentedView]? = nil,
        agent: String, source: TaintLabel = .public, privileges: Set<String> = [], normalize: Bool = false,
        clearance: Clearance, provenance: ProvenanceRecord? = nil, now: Date = Date(), afterShardCommit: ((Int) throws -> Void)? = nil
    ) throws -> [LabelSetVersion] {
        try requireNoSession()
        let classCount = manifest.classes.count
        // Whole-input checks first, so an error names the row of the input, not of a shard's part.
        _ = try LabelValidation.check(values, rows: ids.count, classCount: classCount, normalize: normalize)
        if case .topK(let given) = values { _ = try given.validated(rows: ids.count, classCount: classCount, normalize: normalize) }
        if let views { _ = try ViewImport(views, ids: ids, kind: values.kind) }
        var rowsOf = [[Int]](repeating: [], count: shards.count)
        for (row, id) in ids.enumerated() {
            guard let shard = manifest.shard(of: id) else { throw LabelError.unknownSample(id) }
            rowsOf[shard].append(row)
        }
        let version = (manifest.labelSets[name] ?? 0) + 1
        let request = LabelPartRequest(name: name, version: version, codec: codec, agent: agent, source: source, privileges: privileges,
                                       normalize: normalize, provenance: provenance, now: now)
        func write(_ index: Int, _ tx: WriteTransaction) throws -> LabelSetVersion {
            let rows = rowsOf[index]
            return try request.write(values.rows(rows, classCount: classCount), ids: rows.map { ids[$0] }, views: views.map { all in rows.map { all[$0] } }, in: tx)
        }
        let written = try writeShards(clearance: clearance, afterShardCommit: afterShardCommit, write)
        var next = manifest
        next.labelSets[name] = version
        try commit(next)
        return written
    }

    /// Runs `write` on every shard: first in a transaction per shard that is then abandoned, so
    /// nothing is written anywhere unless every shard's part would be; then in one committed
    /// transaction per shard, in shard order. Returns each shard's result.
    func writeShards<T>(
        clearance: Clearance, afterShardCommit: ((Int) throws -> Void)?, _ write: (Int, WriteTransaction) throws -> T
    ) throws -> [T] {
        for index in shards.indices { _ = try shards[index].checkWrite(clearance: clearance) { try write(index, $0) } }
        var results: [T] = []
        for index in shards.indices {
            results.append(try shards[index].write(clearance: clearance) { tx in try write(index, tx) })
            try afterShardCommit?(index)
        }
        return results
    }

    /// Records the shards' states in `next`, with the next generation, and replaces the manifest;
    /// first every shard registers the tags any shard has (a write may have registered a tag in
    /// the shards its rows went to only), and every committed projector version takes the join
    /// of its taint in every shard (a replaced sample restricts the versions fitted on it in its
    /// own shard only, R-32; the parameters are the same in every shard, so all must follow).
    func commit(_ next: CorpusManifest) throws {
        try unifyTagRegistries()
        try unifyProjectorTaints(next)
        var next = next
        next.generation = manifest.generation + 1
        next.shardStates = try shards.map { shard in try shard.read(clearance: .all) { try CorpusManifest.ShardState(of: $0) } }
        try next.write(to: path)
        manifest = next
    }
}

/// Thrown to abandon a write transaction after its checks passed.
private struct AbandonedCheck: Error {}

extension Store {
    /// Runs `body` in a write transaction that is then abandoned, and returns its result: the
    /// write's checks run (and throw) as in a real one, and nothing is written.
    func checkWrite<T>(clearance: Clearance, _ body: (WriteTransaction) throws -> T) throws -> T {
        var result: T?
        do {
            try write(clearance: clearance) { tx in result = try body(tx); throw AbandonedCheck() }
        } catch is AbandonedCheck {}
        // safe: the closure set `result` before throwing AbandonedCheck, the only way to get here.
        return result!
    }
}

/// One shard's part of a corpus label import (K-7), everything but the rows: the set, the version
/// the manifest allocated, and the import's options.
struct LabelPartRequest {
    var name: String
    var version: Int
    var codec: SoftLabelCodec?
    var agent: String
    var source: TaintLabel
    var privileges: Set<String>
    var normalize: Bool
    var provenance: ProvenanceRecord?
    var now: Date

    /// Discards the shard's rows of the set at versions ≥ `version` (an import that never reached
    /// the manifest), imports the part as `version` and describes it with the provenance record.
    func write(_ values: LabelValues, ids: [UInt64], views: [AugmentedView]?, in tx: WriteTransaction) throws -> LabelSetVersion {
        try tx.discardLabelVersions(name, from: version)
        let written = try tx.importLabels(values, ids: ids, into: name, codec: codec, views: views, agent: agent, source: source,
                                          privileges: privileges, normalize: normalize, now: now)
        guard written.version == version else {
            throw CorpusError.damaged("\(tx.store.path): label set \(name) took version \(written.version), the manifest allocated \(version)")
        }
        if var record = provenance {
            record.generated = [ProvenanceEntity(kind: "label_set", name: name, version: version, rows: written.rows)]
            tx.describe(record)
        }
        return written
    }
}

extension LabelValues {
    /// The rows at `indices`, in that order.
    func rows(_ indices: [Int], classCount: Int) -> LabelValues {
        switch self {
        case .soft(let p): .soft(indices.flatMap { p[($0 * classCount)..<(($0 + 1) * classCount)] })
        case .hard(let c): .hard(indices.map { c[$0] })
        case .multi(let m): .multi(indices.map { m[$0] })
        case .topK(let top):
            .topK(TopKRows(k: top.k, classes: indices.flatMap { top.classes[($0 * top.k)..<(($0 + 1) * top.k)] },
                           probabilities: indices.flatMap { top.probabilities[($0 * top.k)..<(($0 + 1) * top.k)] },
                           leftover: top.leftover.map { l in indices.map { l[$0] } }))
        }
    }
}

extension WriteTransaction {
    /// Removes versions `first`… of label set `name` — their rows, class postings and records —
    /// as if they had never been imported (the set itself when `first` is 1): what a shard of a
    /// corpus does with the rows of an import whose version the manifest never recorded, before
    /// it writes that version again. Returns the versions removed.
    @discardableResult
    func discardLabelVersions(_ name: String, from first: Int) throws -> Int {
        let nameKey = Array(name.utf8)
        guard var record = try labelSetRecord(key: nameKey), record.latest >= first, first >= 1 else { return 0 }
        try deleteVersions(from: first, of: record.id, in: [(.labelBlocks, 12, 16), (.labelPostings, 8, ClassPostings.keySize)])
        for version in first...record.latest { try delete(.labelVersions, key: LabelRecord.versionKey(set: record.id, version: UInt32(version))) }
        let removed = record.latest - first + 1
        if first == 1 {
            try delete(.labelSets, key: nameKey)
        } else {
            // The set's codec is fixed by its first soft import: if that was a discarded one, the
            // set has none again (every shard must choose the same one on the retry).
            let kept = try versionRecords(LabelSetVersion.self, in: .labelVersions, id: record.id, latest: first - 1, name: name)
            if !kept.contains(where: { $0.kind == .soft }) { record.codec = nil }
            record.latest = first - 1
            try put(.labelSets, key: nameKey, bytes: LabelRecord.encodeJSON(record, key: nameKey))
        }
        noteChange("label_versions_discarded", removed)
        return removed
    }
}

extension WriteTransaction {
    /// Deletes the records of versions `first`… of the label set or projector `id` from each
    /// table: keys of `keySize` bytes starting with the id's 4 bytes, whose big-endian version
    /// sits at `versionOffset`.
    func deleteVersions(from first: Int, of id: UInt32, in tables: [(table: Table, versionOffset: Int, keySize: Int)]) throws {
        var prefix: [UInt8] = []
        BigEndianKey.append(id, to: &prefix)
        var doomed: [(Table, [UInt8])] = []
        for (table, versionOffset, keySize) in tables {
            try walk(table, from: prefix) { key, _ in
                guard key.prefix(4).elementsEqual(prefix) else { return false }
                guard key.count == keySize else { throw damagedKey(key.count, expected: keySize, in: table) }
                if BigEndianKey.u32(key, at: versionOffset) >= UInt32(first) { doomed.append((table, Array(key))) }
                return true
            }
        }
        for (table, key) in doomed { try delete(table, key: key) }
    }
}

extension CorpusWriter {
    /// Throws unless `clearance` names only tags the corpus's registry knows, as a store's
    /// commands check theirs (``Corpus/validate(_:)``).
    public func validate(_ clearance: Clearance) throws {
        try Corpus.validate(clearance, against: shards)
    }

    /// Gives every committed projector version of `manifest`, in every shard, the join of its
    /// taint over the shards: only a shard whose versions are below it writes (with a provenance
    /// record of the change), so a commit with nothing to join writes nothing.
    func unifyProjectorTaints(_ manifest: CorpusManifest) throws {
        let each = try shards.map { try ProjectorVersionKey.taints(of: $0, committed: manifest) }
        let joined = ProjectorVersionKey.join(each)
        for (shard, taints) in zip(shards, each) where taints != joined {
            try shard.write(clearance: .all) { tx in _ = try tx.restrictProjectorVersions(to: joined) }
        }
    }

    /// Registers in every shard the tags any shard has, so that every shard's registry is the
    /// corpus's (a clearance naming a tag then means the same in each).
    func unifyTagRegistries() throws {
        let registries = try shards.map { shard in Set(try shard.read(clearance: .all) { try $0.registeredTags() }) }
        let all = registries.reduce(Set<String>()) { $0.union($1) }
        // Registering writes no provenance record: the registry lists names, and a name nothing
        // carries names nothing (storage.md §12 records changes to samples, labels, heads, projectors).
        for (shard, known) in zip(shards, registries) where known != all {
            try shard.write(clearance: .all) { tx in try tx.registerTags(all.subtracting(known).sorted()) }
        }
    }
}

extension LabelSetVersion {
    /// One version as a corpus sees it, from its shards' records of it: counts and bytes summed,
    /// fidelity weighted by each shard's rows (largest KL the largest, histograms summed).
    public static func combined(_ parts: [LabelSetVersion]) -> LabelSetVersion {
        guard var whole = parts.first else { preconditionFailure("a version has at least one shard") }
        whole.rows = parts.reduce(0) { $0 + $1.rows }
        whole.labelled = parts.reduce(0) { $0 + $1.labelled }
        whole.softBytes = parts.reduce(0) { $0 + $1.softBytes }
        whole.views = parts.contains { $0.views != nil } ? parts.reduce(0) { $0 + ($1.views ?? 0) } : nil
        let measured = parts.compactMap { part in part.fidelity.map { (fidelity: $0, rows: part.rows) } }
        whole.fidelity = measured.isEmpty ? nil : Fidelity.combined(measured)
        // A sum over shards some of which hide rows would tell how many are hidden.
        if parts.contains(where: { $0.statisticsRedacted }) { whole.redactStatistics() }
        return whole
    }
}

extension Fidelity {
    /// The fidelity of several imports' rows taken together.
    static func combined(_ parts: [(fidelity: Fidelity, rows: Int)]) -> Fidelity {
        let rows = Double(parts.reduce(0) { $0 + $1.rows })
        func mean(_ value: (Fidelity) -> Double) -> Double {
            rows > 0 ? parts.reduce(0) { $0 + value($1.fidelity) * Double($1.rows) } / rows : value(parts[0].fidelity)
        }
        var whole = parts[0].fidelity
        whole.meanKL = mean(\.meanKL)
        whole.maxKL = parts.map(\.fidelity.maxKL).max() ?? 0
        whole.top1Agreement = mean(\.top1Agreement)
        whole.bytesPerLabel = mean(\.bytesPerLabel)
        whole.ratioToDenseF32 = mean(\.ratioToDenseF32)
        whole.exact = parts.contains { $0.fidelity.exact == nil } ? nil : parts.allSatisfy { $0.fidelity.exact == true }
        let histograms = parts.compactMap(\.fidelity.klHistogram)
        whole.klHistogram = histograms.count == parts.count ? histograms.dropFirst().reduce(histograms[0]) { zip($0, $1).map { $0 + $1 } } : nil
        return whole
    }
}

extension CorpusWriter {
    /// Imports samples: each row into the shard of its id (``WriteTransaction/put(_:mode:privileges:progress:)``
    /// on each shard's part), after every part has been checked in a transaction that is then
    /// abandoned, so bad input writes nothing anywhere; then the next manifest generation records
    /// the shards' states. Samples carry no versions: a writer that dies between shards leaves
    /// the parts already committed visible, and running the same import again with `.replace`
    /// completes it.
    ///
    /// - Throws: ``StoreError/invalidSample(id:reason:)`` for a bad row or an id no shard's range
    ///   holds; the put's errors (an id already stored, under `.insert`).
    @discardableResult
    public func importSamples(
        _ batch: SampleBatch, mode: PutMode, privileges: Set<String> = [], clearance: Clearance, provenance: ProvenanceRecord? = nil,
        afterShardCommit: ((Int) throws -> Void)? = nil
    ) throws -> PutSummary {
        try requireNoSession()
        // Whole-batch checks first, so an error names the input's row, not a shard part's.
        try SampleValidation.check(batch, schema: shards[0].schema)
        var rowsOf = [[Int]](repeating: [], count: shards.count)
        var seen = Set<UInt64>()
        for (row, id) in batch.ids.enumerated() {
            guard seen.insert(id).inserted else { throw StoreError.duplicateID(id) }
            guard let shard = manifest.shard(of: id) else { throw StoreError.invalidSample(id: id, reason: "no shard's range holds this id") }
            rowsOf[shard].append(row)
        }
        let d = manifest.dimension
        func write(_ index: Int, _ tx: WriteTransaction) throws -> PutSummary {
            try tx.putPart(batch.rows(rowsOf[index], dimension: d), mode: mode, privileges: privileges, provenance: provenance)
        }
        var total = PutSummary()
        for summary in try writeShards(clearance: clearance, afterShardCommit: afterShardCommit, write) {
            total.inserted += summary.inserted
            total.replaced += summary.replaced
        }
        try commit(manifest)
        return total
    }

    /// The largest id any shard holds, visible or not: new ids are allocated past it.
    public func largestIDInUse() throws -> UInt64? {
        try shards.compactMap { shard in try shard.read(clearance: .all) { try $0.lastKey(.samples) } }.max()
    }
}

extension WriteTransaction {
    /// Puts one shard's part of a corpus sample import (K-10) and describes it with the
    /// provenance record (a part with no rows writes no record).
    func putPart(_ part: SampleBatch, mode: PutMode, privileges: Set<String>, provenance: ProvenanceRecord?) throws -> PutSummary {
        let summary = try put(part, mode: mode, privileges: privileges)
        if var record = provenance, !part.ids.isEmpty {
            record.generated = [ProvenanceEntity(kind: "samples", name: "samples", rows: part.ids.count, firstID: part.ids.min(), lastID: part.ids.max())]
            record.parameters["inserted"] = "\(summary.inserted)"
            record.parameters["replaced"] = "\(summary.replaced)"
            describe(record)
        }
        return summary
    }
}

extension SampleBatch {
    /// The rows at `indices`, in that order.
    func rows(_ indices: [Int], dimension d: Int) -> SampleBatch {
        SampleBatch(ids: indices.map { ids[$0] }, embeddings: indices.flatMap { embeddings[($0 * d)..<(($0 + 1) * d)] },
                    metadata: metadata.map { m in indices.map { m[$0] } }, payloads: payloads.map { p in indices.map { p[$0] } },
                    taints: taints.map { t in indices.map { t[$0] } })
    }
}
