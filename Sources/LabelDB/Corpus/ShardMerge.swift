import Foundation

/// Merging shards: building one store from the samples of several shards of a corpus, what a
/// re-shard to a count that is not a multiple of the old one (or to another routing rule) needs.
///
/// A new shard starts as a copy of one old shard (its *base*: its log, label-set, projector and
/// head records carry on byte for byte) without the samples routed elsewhere; ``append(_:from:)``
/// then copies in the samples other old shards hold for it, record by record: the sample record,
/// its embedding row, its label rows of every committed version, class postings, fitted-sample
/// bits, projector corrections and taint label. What one store numbers for itself is numbered
/// again: embedding slots (the appended samples take slots past the base's, aligned so that no
/// block, posting chunk or fitted bitmap of the base is touched; packing closes the gap after),
/// label-set and projector ids (matched by name), taint-label and tag ids (interned by content),
/// and embedding sequences (``finish()``). Rows' bytes are copied as stored; only checksums
/// seeded with a key that changed are computed again, after the old one is checked.
///
/// An appended sample's record keeps its provenance record when both logs hold that record (a
/// log both shards inherited from the store they were split from); otherwise it names this
/// write's record (the merge), whose parameters name each source shard and its log's head: the
/// source's own chain stays in the source corpus, anchored there.
struct ShardMerge {
    let tx: WriteTransaction
    /// The source corpus's manifest: only what it commits is copied.
    let committed: CorpusManifest
    /// For each appended sample, the index in `fitSequences` of the store it came from.
    private var origins: [UInt64: Int] = [:]
    /// Per origin (0: the base), the embedding sequence each committed projector version
    /// recorded at its fit there.
    private var fitSequences: [[ProjectorVersionKey: UInt64]]
    /// Per label set (by name), the version in which each appended sample first got a label.
    private var firstLabelled: [String: [Int]] = [:]

    init(into tx: WriteTransaction, committed: CorpusManifest) throws {
        self.tx = tx
        self.committed = committed
        fitSequences = [try Self.fitSequences(of: tx, committed: committed)]
    }

    /// Copies samples `ids` (every one held by `source`, none by this store) from the store
    /// `source` reads, with everything kept per sample (see the type's description).
    ///
    /// - Throws: ``CorpusError/shardsDisagree(_:)`` when the two stores do not hold the same
    ///   committed label sets, projectors and heads; damage found in the source's records.
    mutating func append(_ ids: [UInt64], from source: Transaction) throws {
        guard !ids.isEmpty else { return }
        let names = try SharedNames(tx, source, committed: committed)
        try tx.registerTags(try source.registeredTags())
        let moved = try appendSamples(ids, from: source)
        try appendLabelRows(from: source, names: names, moved: moved)
        try appendPostings(from: source, names: names, moved: moved)
        try appendFitted(from: source, names: names, moved: moved)
        try appendCorrections(from: source, names: names, moved: moved)
        fitSequences.append(try Self.fitSequences(of: source, committed: committed))
        for id in ids { origins[id] = fitSequences.count - 1 }
    }

    /// Adds the appended samples to every version's `labelled`, and numbers the embedding
    /// sequences again (``renumberSequences()``). Call once, after the last ``append(_:from:)``.
    func finish() throws {
        for (name, firsts) in firstLabelled {
            guard let record = try tx.labelSetRecord(key: Array(name.utf8)) else { continue }
            for (index, count) in LabelledCounts.counts(firstVersions: firsts, latest: record.latest).enumerated() where count > 0 {
                let key = LabelRecord.versionKey(set: record.id, version: UInt32(index + 1))
                var version = try tx.labelSetVersion(set: record.id, version: UInt32(index + 1), name: name)
                version.labelled += count
                try tx.put(.labelVersions, key: key, bytes: LabelRecord.encodeJSON(version, key: key))
            }
        }
        try renumberSequences()
    }
}

// The slot-keyed copies.
extension ShardMerge {
    /// The appended samples' source slots and the slots they take here.
    struct MovedSlots {
        /// Source slot → (id, slot here).
        var bySourceSlot: [UInt64: (id: UInt64, slot: UInt64)] = [:]
    }

    /// Writes the sample records and embedding rows; returns where each slot went. The new slots
    /// start at the base's next slot rounded up to a whole embedding block, label block, posting
    /// chunk and fitted bitmap, so every slot-keyed value written here is a new key.
    private func appendSamples(_ ids: [UInt64], from source: Transaction) throws -> MovedSlots {
        let layout = tx.store.blockLayout
        guard source.store.formatVersion == Store.currentFormatVersion, tx.store.formatVersion == Store.currentFormatVersion else {
            throw CorpusError.invalid("merging shards needs stores of format \(Store.currentFormatVersion); open the corpus for writing once to migrate it")
        }
        guard source.store.blockLayout.capacity == layout.capacity, source.store.schema == tx.store.schema else {
            throw CorpusError.shardsDisagree("\(source.store.path) and \(tx.store.path) have different schemas")
        }
        let alignment = Self.lcm(UInt64(layout.capacity), max(ClassPostings.chunkSlots, LabelBlock.slots))
        let first = (try tx.nextSlot() + alignment - 1) / alignment * alignment
        let merge = try tx.provenanceID()
        var shared: [UInt64: Bool] = [:]
        var records: [(id: UInt64, slot: UInt64, bytes: [UInt8])] = []
        for id in ids {
            guard try tx.withValue(.samples, key: id, { $0 == nil }) else {
                throw CorpusError.shardsDisagree("sample \(id) is in both \(source.store.path) and \(tx.store.path)")
            }
            let (slot, bytes) = try source.withValue(.samples, key: id) { stored -> (UInt64, [UInt8]) in
                guard let stored else { throw CorpusError.invalid("sample \(id) is not in \(source.store.path)") }
                do {
                    let view = try SampleRecord.decode(id: id, stored)
                    let label = try tx.intern(try source.taintLabel(id: view.taintLabel, sample: id))
                    if shared[view.provenance] == nil { shared[view.provenance] = try Self.sameRecord(view.provenance, in: source, and: tx) }
                    let provenance = shared[view.provenance]! ? view.provenance : merge
                    return (view.slot, Self.record(view, id: id, taintLabel: label, provenance: provenance))
                } catch { throw source.contextualize(error, table: .samples, key: "\(id)") }
            }
            records.append((id, slot, bytes))
        }
        records.sort { $0.slot < $1.slot }
        var moved = MovedSlots()
        var pending: [PackedRow] = []
        for (rank, record) in records.enumerated() {
            let slot = first + UInt64(rank)
            moved.bySourceSlot[record.slot] = (record.id, slot)
            try tx.put(.samples, key: BigEndianKey.u64(record.id), bytes: SampleRecord.moved(record.bytes, id: record.id, slot: slot))
            try tx.movePartition(sample: record.id, from: nil, to: SampleRecord.taintLabelID(record.bytes))
            pending.append(try source.withEmbeddingRow(id: record.id, slot: record.slot) { row in
                PackedRow(id: record.id, checksum: Checksum.xxh3(row, seed: record.id), bytes: Array(row))
            })
            if pending.count == layout.capacity || rank == records.count - 1 {
                let block = slot / UInt64(layout.capacity)
                try tx.put(.embeddings, key: block, size: layout.size(rows: pending.count)) { out in
                    EmbeddingBlockWriter.writePacked(block: block, layout: layout, rows: pending, into: out)
                }
                pending.removeAll(keepingCapacity: true)
            }
        }
        try tx.put(.meta, name: MetaKey.slots, bytes: CounterRecord.encoded(first + UInt64(records.count)))
        tx.noteChange("samples_merged", records.count)
        return moved
    }

    /// True when provenance record `number` is the same record in both stores' logs: equal
    /// bytes, which include the hash of the record before (the log is hash-chained, §12), so
    /// the logs agree up to it. Shards split from one store share that store's log.
    private static func sameRecord(_ number: UInt64, in source: Transaction, and tx: Transaction) throws -> Bool {
        guard number > 0 else { return true }
        let theirs: [UInt8]? = try source.withValue(.provenance, key: number) { $0.map(Array.init) }
        return try theirs != nil && tx.withValue(.provenance, key: number) { $0.map(Array.init) } == theirs
    }

    /// A sample record as stored in the source, with this store's taint label id and provenance
    /// record `provenance` (its slot is set when written).
    private static func record(_ view: SampleRecord.View, id: UInt64, taintLabel: UInt32, provenance: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: SampleRecord.size(metadataCount: view.metadata.count, payloadCount: view.payload.count))
        out.withUnsafeMutableBytes { buffer in
            SampleRecord.encode(id: id, slot: view.slot, taintLabel: taintLabel, provenance: provenance, embeddingSequence: view.embeddingSequence,
                                metadata: view.metadata, payload: view.payload, into: buffer)
        }
        return out
    }

    /// Copies the label rows of the appended samples, in committed versions of committed sets,
    /// into blocks under this store's set id and the samples' new slots.
    private mutating func appendLabelRows(from source: Transaction, names: SharedNames, moved: MovedSlots) throws {
        var blocks: [[UInt8]: [(offset: Int, bytes: [UInt8])]] = [:]
        var firsts: [String: [UInt64: Int]] = [:]
        try source.walk(.labelBlocks, from: nil) { key, value in
            guard key.count == 16 else { throw source.damagedKey(key.count, expected: 16, in: .labelBlocks) }
            let (set, block, version) = (BigEndianKey.u32(key, at: 0), BigEndianKey.u64(key, at: 4), BigEndianKey.u32(key, at: 12))
            guard let setHere = names.labelSets[set], Int(version) <= setHere.committed else { return true }
            let label = "set \(set)@\(version) block \(block)"
            let view: LabelBlockView
            do { view = try LabelBlockView(key: key, bytes: value) } catch { throw source.contextualize(error, table: .labelBlocks, key: label) }
            try view.forEachSlot { offset, rank in
                guard let target = moved.bySourceSlot[block * LabelBlock.slots + UInt64(offset)] else { return }
                let newKey = LabelBlock.key(set: setHere.id, block: target.slot / LabelBlock.slots, version: version)
                guard let row = LabelBlock.reseeded(view.rowBytes(rank: rank), from: view.seed, to: newKey, id: target.id) else {
                    throw StoreError.corruptRecord(store: source.store.path, table: Table.labelBlocks.rawValue, key: label,
                                                   detail: "the row of sample \(target.id) fails its checksum; run verify")
                }
                blocks[newKey, default: []].append((Int(target.slot % LabelBlock.slots), row))
                firsts[setHere.name, default: [:]][target.id] = min(firsts[setHere.name]?[target.id] ?? Int.max, Int(version))
            }
            return true
        }
        // A new block's rows arrive in slot order: old blocks are walked in block order and the
        // new slots keep the old slots' order.
        for key in blocks.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            try tx.put(.labelBlocks, key: key, bytes: LabelBlock.encode(key: key, rows: blocks[key]!))
        }
        for (set, bySample) in firsts { firstLabelled[set, default: []] += bySample.values }
    }

    /// Copies the class postings of the appended samples.
    private func appendPostings(from source: Transaction, names: SharedNames, moved: MovedSlots) throws {
        var groups: [[UInt32]: [(classIndex: UInt32, slot: UInt64)]] = [:]
        try source.walk(.labelPostings, from: nil) { key, value in
            guard key.count == ClassPostings.keySize else { throw source.damagedKey(key.count, expected: ClassPostings.keySize, in: .labelPostings) }
            let fields = ClassPostings.fields(key)
            guard let setHere = names.labelSets[fields.set], Int(fields.version) <= setHere.committed else { return true }
            let offsets: [UInt16]
            do { offsets = try ClassPostings.decode(key: key, value) } catch {
                throw source.contextualize(error, table: .labelPostings, key: "set \(fields.set)@\(fields.version) class \(fields.classIndex)")
            }
            for slot in ClassPostings.slots(chunk: fields.chunk, offsets: offsets) {
                guard let target = moved.bySourceSlot[slot] else { continue }
                groups[[setHere.id, fields.version], default: []].append((fields.classIndex, target.slot))
            }
            return true
        }
        for (group, entries) in groups { try tx.addPostings(entries, set: group[0], version: group[1]) }
    }

    /// Copies the fitted-sample bits of the appended samples.
    private func appendFitted(from source: Transaction, names: SharedNames, moved: MovedSlots) throws {
        var groups: [[UInt32]: [UInt64]] = [:]
        try source.walk(.projectorFitted, from: nil) { key, value in
            guard key.count == 16 else { throw source.damagedKey(key.count, expected: 16, in: .projectorFitted) }
            let (projector, version, block) = (BigEndianKey.u32(key, at: 0), BigEndianKey.u32(key, at: 4), BigEndianKey.u64(key, at: 8))
            guard let here = names.projectors[projector], Int(version) <= here.committed else { return true }
            let bitmap: [UInt8]
            do { bitmap = try FittedBlock.decode(key: key, value) } catch {
                throw source.contextualize(error, table: .projectorFitted, key: "projector \(projector)@\(version) block \(block)")
            }
            for (byte, bits) in bitmap.enumerated() where bits != 0 {
                for bit in 0..<8 where bits & (1 << bit) != 0 {
                    if let target = moved.bySourceSlot[block * FittedBlock.slots + UInt64(8 * byte + bit)] {
                        groups[[here.id, version], default: []].append(target.slot)
                    }
                }
            }
            return true
        }
        for (group, slots) in groups { try tx.putFitted(projector: group[0], version: Int(group[1]), slots: slots) }
    }

    /// Copies the projector corrections of the appended samples.
    private func appendCorrections(from source: Transaction, names: SharedNames, moved: MovedSlots) throws {
        let appended = Set(moved.bySourceSlot.values.map(\.id))
        try source.walk(.projectorCorrections, from: nil) { key, value in
            guard key.count == 16 else { throw source.damagedKey(key.count, expected: 16, in: .projectorCorrections) }
            let (projector, version, id) = (BigEndianKey.u32(key, at: 0), BigEndianKey.u32(key, at: 4), BigEndianKey.u64(key, at: 8))
            guard appended.contains(id), let here = names.projectors[projector], Int(version) <= here.committed else { return true }
            let newKey = ProjectorCodec.correctionKey(id: here.id, version: Int(version), sample: id)
            let bytes: [UInt8]
            do {
                let stored = try ProjectorCodec.decodeCorrection(key: key, value)
                bytes = ProjectorCodec.encodeCorrection(key: newKey, codec: stored.codec, bytes: Array(stored.bytes))
            } catch { throw source.contextualize(error, table: .projectorCorrections, key: "projector \(projector)@\(version) sample \(id)") }
            try tx.put(.projectorCorrections, key: newKey, bytes: bytes)
            return true
        }
    }

    static func lcm(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var (x, y) = (a, b)
        while y != 0 { (x, y) = (y, x % y) }
        return a / x * b
    }
}

// Names shared by the two stores, and embedding sequences.
extension ShardMerge {
    /// The committed label sets and projectors of a source store, by its ids: this store's id for
    /// each, and the manifest's committed version. Checked to agree: both stores hold every
    /// committed set (with one codec and kind) and projector, and the same heads.
    struct SharedNames {
        var labelSets: [UInt32: (id: UInt32, name: String, committed: Int)] = [:]
        var projectors: [UInt32: (id: UInt32, committed: Int)] = [:]

        init(_ tx: WriteTransaction, _ source: Transaction, committed manifest: CorpusManifest) throws {
            func disagree(_ what: String) -> CorpusError {
                .shardsDisagree("\(source.store.path) and \(tx.store.path) disagree on \(what)")
            }
            for (name, version) in manifest.labelSets {
                let key = Array(name.utf8)
                guard let here = try tx.labelSetRecord(key: key), let there = try source.labelSetRecord(key: key),
                      here.latest >= version, there.latest >= version else { throw disagree("label set \(name)") }
                guard here.codec == there.codec || there.codec == nil || here.codec == nil, here.views == there.views else {
                    throw disagree("label set \(name)'s codec or kind")
                }
                labelSets[there.id] = (here.id, name, version)
            }
            for (name, version) in manifest.projectors {
                let key = Array(name.utf8)
                guard let here = try tx.projectorRecord(key: key), let there = try source.projectorRecord(key: key),
                      here.latest >= version, there.latest >= version else { throw disagree("projector \(name)") }
                projectors[there.id] = (here.id, version)
            }
            let heads = try tx.names(in: .heads)
            guard try source.names(in: .heads) == heads else { throw disagree("the base heads they hold") }
            for name in heads {
                let (a, b) = (try tx.fitHead(named: name), try source.fitHead(named: name))
                guard a.contentHash == b.contentHash, a.taint == b.taint else { throw disagree("base head \(name)") }
            }
        }
    }

    /// The embedding sequence each committed projector version of `tx`'s store recorded.
    static func fitSequences(of tx: Transaction, committed: CorpusManifest) throws -> [ProjectorVersionKey: UInt64] {
        var out: [ProjectorVersionKey: UInt64] = [:]
        for (name, latest) in committed.projectors where latest > 0 {
            guard let record = try tx.projectorRecord(key: Array(name.utf8)) else { continue }
            let versions = try tx.versionRecords(ProjectorVersion.self, in: .projectorVersions, id: record.id, latest: latest, name: name)
            for version in versions { out[ProjectorVersionKey(name: name, version: version.version)] = version.sequence }
        }
        return out
    }

    /// Numbers the embedding sequences again, so that every sample is stale for exactly the
    /// projector versions it was stale for in its own store (R-23: a sample whose sequence is
    /// above a version's was written after that fit).
    ///
    /// Each store counted its own sequence, so the numbers do not compare across stores. The fits
    /// are put in one order that agrees with every store's (sorted by the vector of their
    /// sequences in the base and in each source); version i of that order records sequence 2i,
    /// and a sample stale for the first k fits gets 2k + 1. A sample stale for a set of fits that
    /// is not a prefix of that order (its store recorded the fits in another order) is refused.
    private func renumberSequences() throws {
        let fits = fitSequences[0].keys.sorted { a, b in
            let (va, vb) = (fitSequences.map { $0[a] ?? 0 }, fitSequences.map { $0[b] ?? 0 })
            return va != vb ? va.lexicographicallyPrecedes(vb) : a < b
        }
        var rewrites: [(id: UInt64, bytes: [UInt8])] = []
        try tx.walk(.samples, from: nil) { key, value in
            guard key.count == 8 else { throw tx.damagedKey(key.count, expected: 8, in: .samples) }
            let id = BigEndianKey.u64(key, at: 0)
            let view: SampleRecord.View
            do { view = try SampleRecord.decode(id: id, value) } catch { throw tx.contextualize(error, table: .samples, key: "\(id)") }
            let sequences = fitSequences[origins[id] ?? 0]
            let stale = fits.map { (sequences[$0] ?? 0) < view.embeddingSequence }
            let k = stale.prefix { $0 }.count
            guard !stale[k...].contains(true) else {
                throw CorpusError.shardsDisagree("sample \(id): its shard recorded the projector fits in another order than \(tx.store.path)")
            }
            let renumbered = UInt64(2 * k + 1)
            if renumbered != view.embeddingSequence {
                rewrites.append((id, SampleRecord.relabelled(Array(value), id: id, taintLabel: view.taintLabel, sequence: renumbered)))
            }
            return true
        }
        for (id, bytes) in rewrites { try tx.put(.samples, key: BigEndianKey.u64(id), bytes: bytes) }
        for (rank, fit) in fits.enumerated() {
            guard let record = try tx.projectorRecord(key: Array(fit.name.utf8)) else { continue }
            let key = ProjectorCodec.versionKey(id: record.id, version: fit.version)
            var version = try tx.versionRecords(ProjectorVersion.self, in: .projectorVersions, id: record.id, latest: fit.version, name: fit.name)[fit.version - 1]
            version.sequence = UInt64(2 * rank + 2)
            try tx.put(.projectorVersions, key: key, bytes: LabelRecord.encodeJSON(version, key: key))
        }
        try tx.put(.meta, name: MetaKey.sequence, bytes: CounterRecord.encoded(UInt64(2 * fits.count + 1)))
    }
}

extension LabelBlock {
    /// A row's bytes (body and checksum) reseeded for another block key: nil when its checksum
    /// does not check under the old block's `seed` for sample `id`.
    static func reseeded(_ row: UnsafeRawBufferPointer, from seed: UInt64, to key: [UInt8], id: UInt64) -> [UInt8]? {
        let body = Array(row.prefix(row.count - 4))
        let stored = row.loadUnaligned(fromByteOffset: row.count - 4, as: UInt32.self).littleEndian
        guard stored == UInt32(truncatingIfNeeded: Checksum.xxh3(body, seed: seed ^ id)) else { return nil }
        var bytes = body
        appendLE(UInt32(truncatingIfNeeded: Checksum.xxh3(body, seed: SealedRecord.seed(key: key) ^ id)), to: &bytes)
        return bytes
    }
}

extension SampleRecord {
    /// The taint label id of an (already checked) record.
    static func taintLabelID(_ bytes: [UInt8]) -> UInt32 {
        UInt32(bytes[12]) | UInt32(bytes[13]) << 8 | UInt32(bytes[14]) << 16 | UInt32(bytes[15]) << 24
    }
}

/// A projector version, by name: what names one version in every shard of a corpus.
struct ProjectorVersionKey: Hashable, Comparable {
    let name: String
    let version: Int
    static func < (a: Self, b: Self) -> Bool { (a.name, a.version) < (b.name, b.version) }

    /// Every committed version of `committed`'s projectors, with the join of its taint over the
    /// stores `shards` (each read under `.all`).
    static func joinedTaints(of shards: [Store], committed: CorpusManifest) throws -> [ProjectorVersionKey: TaintLabel] {
        join(try shards.map { try taints(of: $0, committed: committed) })
    }

    /// The join, version by version, of several shards' taints.
    static func join(_ shards: [[ProjectorVersionKey: TaintLabel]]) -> [ProjectorVersionKey: TaintLabel] {
        shards.reduce(into: [:]) { joined, taints in
            for (key, taint) in taints { joined[key] = (joined[key] ?? .public).join(taint) }
        }
    }

    /// The taint each committed version of `committed`'s projectors has in `shard`.
    static func taints(of shard: Store, committed: CorpusManifest) throws -> [ProjectorVersionKey: TaintLabel] {
        try shard.read(clearance: .all) { tx in
            var out: [ProjectorVersionKey: TaintLabel] = [:]
            for (name, latest) in committed.projectors where latest > 0 {
                guard let record = try tx.projectorRecord(key: Array(name.utf8)) else { continue }
                for version in try tx.versionRecords(ProjectorVersion.self, in: .projectorVersions, id: record.id, latest: latest, name: name) {
                    out[ProjectorVersionKey(name: name, version: version.version)] = version.taintLabel
                }
            }
            return out
        }
    }
}

extension WriteTransaction {
    /// Joins `taints` into the stored projector versions they name (R-32: a version's taint only
    /// rises); returns how many records changed.
    func restrictProjectorVersions(to taints: [ProjectorVersionKey: TaintLabel]) throws -> Int {
        var changed = 0
        for (key, taint) in taints.sorted(by: { $0.key < $1.key }) {
            guard let record = try projectorRecord(key: Array(key.name.utf8)), record.latest >= key.version else { continue }
            var version = try versionRecords(ProjectorVersion.self, in: .projectorVersions, id: record.id, latest: key.version, name: key.name)[key.version - 1]
            let restricted = version.taintLabel.join(taint)
            guard restricted != version.taintLabel else { continue }
            version.taint = restricted
            _ = try intern(restricted)
            let vkey = ProjectorCodec.versionKey(id: record.id, version: key.version)
            try put(.projectorVersions, key: vkey, bytes: LabelRecord.encodeJSON(version, key: vkey))
            changed += 1
        }
        if changed > 0 { noteChange("projector_taints_joined", changed) }
        return changed
    }
}
