import CLMDB

/// What ``Transaction/verify()`` found.
public struct VerificationReport: Sendable {
    /// One damaged or inconsistent record.
    public struct Problem: Sendable, CustomStringConvertible {
        /// The table holding the record.
        public let table: String
        /// The record's key, as text (an id, "block 3", "schema").
        public let key: String
        /// What is wrong with it.
        public let detail: String
        public var description: String { "table `\(table)`, key \(key): \(detail)" }

        /// A problem found in `table` at `key`.
        public init(table: String, key: String, detail: String) {
            self.table = table
            self.key = key
            self.detail = detail
        }
    }

    /// Every problem found, in the order the walk met them.
    public var problems: [Problem] = []
    /// Sample records read.
    public var samplesChecked = 0
    /// Embedding blocks read.
    public var blocksChecked = 0
    /// Records read, in every table.
    public var recordsChecked = 0

    /// True when nothing was wrong.
    public var isClean: Bool { problems.isEmpty }

    /// An empty report.
    public init() {}
}

extension Transaction {
    /// Walks the whole store and reports every record that fails its checksum or disagrees with
    /// another record. Damaged bytes become entries in the report, never a throw; only LMDB
    /// failures throw.
    ///
    /// Phases: every table is walked record by record through one decoder per table
    /// (``RecordChecks``), with each key looked up again to prove the B-tree still leads to it;
    /// then the cross-references: samples ↔ embedding rows and free slots, the taint catalog,
    /// partitions and content index, label rows ↔ sets, versions and the class index, projectors ↔
    /// versions, parameters, heads and corrections, and the provenance log's hash chain.
    ///
    /// Verification reads every record, hidden ones included, and its counts would reveal them,
    /// so it needs a clearance that sees the whole store (as ``Store/backup(to:clearance:)`` does).
    ///
    /// LMDB itself trusts its page structure: a damaged branch or leaf page can make it fault.
    /// `labeldb verify` therefore runs this walk in a child process and reports its death as damage.
    ///
    /// - Throws: ``TaintError/clearanceTooNarrow(_:)``; ``LMDBError``.
    public func verify() throws -> VerificationReport {
        guard clearance == .all || (try? seesEverything) == true else {
            throw TaintError.clearanceTooNarrow("verify reads every record; it needs a clearance that sees the whole store (the clearance 'all')")
        }
        var verifier = StoreVerifier(tx: self)
        for table in Table.allCases { try verifier.walk(table) }
        try verifier.checkSamplesAndEmbeddings()
        verifier.checkTaint()
        verifier.checkLabels()
        verifier.checkProjectors()
        try verifier.checkProvenance()
        verifier.checkMetaPages()
        return verifier.report
    }
}

/// The state of one verification: what the walk found, then the cross-checks over it.
struct StoreVerifier {
    let tx: Transaction
    let schema: Schema
    var report = VerificationReport()

    var nextSlot: UInt64?
    var samples: [UInt64: (slot: UInt64, taint: UInt32)] = [:]
    /// Samples whose record is already reported damaged (cross-checks skip what it would have said).
    var damagedSamples: Set<UInt64> = []
    var freeSlots: [UInt64] = []
    var labelSets: [UInt32: (name: String, record: LabelSetRecord)] = [:]
    var labelVersions: [UInt64: (rows: Int, labelled: Int, dropped: Bool)] = [:]
    var labelRows: [UInt32: [UInt64: [(version: UInt32, top1: (Int, Float)?)]]] = [:]
    var indexEntries: [[UInt8]: UInt32] = [:]
    /// Slot → the sample holding it, from the sample records (built when the first label block is read).
    var slotOwners: [UInt64: UInt64]? = nil
    /// The format whose label layout the store has: a store migrated to 6 keeps the older layout
    /// until its rows are packed.
    var layoutVersion: Int {
        let format = tx.store.formatVersion
        return (try? tx.packedLabels) == true ? format : min(format, 5)
    }
    /// Every class posting: (set, version) pair → (class, slot) pairs.
    var postings: [UInt64: Set<Posting>] = [:]
    var heads: [String: UInt32] = [:]
    var projectors: [UInt32: (name: String, record: ProjectorRecord)] = [:]
    var projectorVersions: [UInt64: ProjectorVersion] = [:]
    var parameters: Set<UInt64> = []
    var corrections: [(id: UInt32, version: UInt32, sample: UInt64)] = []
    /// Projector versions with fitted-sample records.
    var fitted: Set<UInt64> = []
    var tagNames: [String: UInt32] = [:]
    var tagIDs: [UInt32: String] = [:]
    var taintLabels: [UInt32: (secrecy: [UInt32], integrity: [UInt32])] = [:]
    var partitions: [(label: UInt32, sample: UInt64)] = []
    var contentIndex: [[UInt8]: UInt32] = [:]

    init(tx: Transaction) {
        self.tx = tx
        self.schema = tx.store.schema
    }

    mutating func problem(_ table: Table, _ key: String, _ detail: String) {
        report.problems.append(.init(table: table.rawValue, key: key, detail: detail))
    }

    static func detail(_ error: any Error) -> String {
        switch error {
        case let mismatch as ChecksumMismatch: mismatch.detail
        case let decoding as RecordDecodingError: decoding.detail
        default: "\(error)"
        }
    }

    /// Two ids in one u64, for maps keyed by (set or projector id, version).
    static func pair(_ a: UInt32, _ b: UInt32) -> UInt64 { UInt64(a) << 32 | UInt64(b) }

    /// Walks every record of `table` through its decoder. Keys must ascend strictly, and a point
    /// lookup of each must reach the same value: a damaged key or branch page that would send
    /// seeks astray (and reads to wrong answers) shows up here.
    mutating func walk(_ table: Table) throws {
        guard tx.env.dbi(table) != nil else { return }   // an older store opened read-only
        var previous: [UInt8]? = nil
        try tx.walk(table, from: nil, checkingOrder: false) { key, value in
            report.recordsChecked += 1
            let name = StoreVerifier.describe(key, in: table)
            if let previous, !previous.lexicographicallyPrecedes(key) {
                let after = previous.withUnsafeBytes { StoreVerifier.describe($0, in: table) }
                problem(table, name, "keys out of order (after \(after))")
            }
            previous = Array(key)
            let reached = try tx.withValue(table, rawKey: key) { found in
                found?.baseAddress == value.baseAddress && found?.count == value.count
            }
            if !reached { problem(table, name, "a lookup of this key does not reach it: the B-tree's keys are damaged") }
            do {
                note(try RecordChecks.check(table, key: key, value: value, schema: schema, formatVersion: layoutVersion))
            } catch {
                problem(table, name, StoreVerifier.detail(error))
                if table == .samples, key.count == 8 { damagedSamples.insert(BigEndianKey.u64(key, at: 0)) }
            }
            return true
        }
        if table == .meta {
            for name in [MetaKey.schema, MetaKey.slots] where try tx.withValue(.meta, name: name, { $0 == nil }) {
                problem(.meta, name, "missing")
            }
        }
    }

    /// Keeps what a record said for the cross-checks.
    mutating func note(_ finding: RecordChecks.Finding) {
        switch finding {
        case .none, .block: break
        case .sample(let id, let slot, let taint):
            report.samplesChecked += 1
            samples[id] = (slot, taint)
        case .freeSlot(let slot): freeSlots.append(slot)
        case .labelSet(let name, let record): labelSets[record.id] = (name, record)
        case .labelVersion(let set, let version, let rows, let labelled, let dropped): labelVersions[Self.pair(set, version)] = (rows, labelled, dropped)
        case .labelRow(let set, let sample, let version, let hard, let soft):
            let top1 = top1(set: set, sample: sample, version: version, hard: hard, soft: soft, table: .labels)
            labelRows[set, default: [:]][sample, default: []].append((version, top1))
        case .labelBlock(let set, let version, let seed, let rows, let rowsChecksumMatches):
            if !rowsChecksumMatches, let first = rows.first {
                problem(.labelBlocks, "set \(set) v\(version) block \(first.slot / LabelBlock.slots)", "the rows checksum does not match the rows")
            }
            noteBlockRows(set: set, version: version, seed: seed, rows: rows)
        case .indexEntry(let key, let until): indexEntries[key] = until
        case .postings(let set, let classIndex, let version, let slots):
            for slot in slots { postings[Self.pair(set, version), default: []].insert(Posting(classIndex: classIndex, slot: slot)) }
        case .head(let name, let taint): heads[name] = taint
        case .projector(let name, let record): projectors[record.id] = (name, record)
        case .projectorVersion(let id, let version, let record): projectorVersions[Self.pair(id, version)] = record
        case .parameters(let id, let version): parameters.insert(Self.pair(id, version))
        case .correction(let id, let version, let sample): corrections.append((id, version, sample))
        case .fitted(let id, let version): fitted.insert(Self.pair(id, version))
        case .tagName(let name, let id): tagNames[name] = id
        case .tagID(let id, let name): tagIDs[id] = name
        case .taintLabel(let id, let secrecy, let integrity): taintLabels[id] = (secrecy, integrity)
        case .partitionEntry(let label, let sample): partitions.append((label, sample))
        case .contentIndexEntry(let key, let label): contentIndex[key] = label
        }
    }

    /// A row's top-1 class and confidence as the class index records it (soft labels decoded
    /// with the set's codec, which the walk of `label_sets` has already met).
    /// The rows of a label block, each checked against the sample its slot holds (the row's
    /// checksum is seeded with that sample's id), and kept like rows of the older layout.
    mutating func noteBlockRows(set: UInt32, version: UInt32, seed: UInt64, rows: [(slot: UInt64, bytes: [UInt8])]) {
        if slotOwners == nil { slotOwners = Dictionary(samples.map { ($0.value.slot, $0.key) }, uniquingKeysWith: min) }
        let perView = labelSets[set]?.record.views == true
        // A per-view set's codec, parsed once for the block (a bad one is reported by every row).
        let viewCodec = perView ? Result { try labelSets[set]?.record.codec.map { try SoftLabelCodec(parsing: $0) } } : .success(nil)
        let classes = schema.classes.count
        for (slot, bytes) in rows {
            let key = "set \(set) v\(version) slot \(slot)"
            guard let sample = slotOwners?[slot] else {
                problem(.labelBlocks, key, "a row in a slot that holds no sample")
                continue
            }
            do {
                // The row's bytes are borrowed only inside the closure: what outlives it is copied.
                let fields: (hard: UInt32?, multi: [UInt32]?, soft: [UInt8]?)? = try bytes.withUnsafeBytes { raw in
                    let row = try LabelBlock.decodeRow(raw, seed: seed ^ sample)
                    try row.checkLayout(perView: perView)
                    guard let views = row.views else { return (row.hard, row.multi, row.soft.map(Array.init)) }
                    // Every view checked; per-view rows have no top-1 class, so no posting.
                    _ = try views.decode(codec: try viewCodec.get(), classCount: classes)
                    return nil
                }
                guard let row = fields else {
                    labelRows[set, default: [:]][sample, default: []].append((version, nil))
                    continue
                }
                if let hard = row.hard, Int(hard) >= classes { throw RecordDecodingError(detail: "hard label \(hard) ≥ \(classes) classes") }
                if let multi = row.multi, multi.contains(where: { Int($0) >= classes }) { throw RecordDecodingError(detail: "multi-label class out of range") }
                let top1 = top1(set: set, sample: sample, version: version, hard: row.hard.map(Int.init), soft: row.soft, table: .labelBlocks)
                labelRows[set, default: [:]][sample, default: []].append((version, top1))
            } catch {
                problem(.labelBlocks, "\(key) (sample \(sample))", Self.detail(error))
            }
        }
    }

    mutating func top1(set: UInt32, sample: UInt64, version: UInt32, hard: Int?, soft: [UInt8]?, table: Table) -> (Int, Float)? {
        var label = Label(version: Int(version), hard: hard)
        if let soft {
            let key = "set \(set) sample \(sample) v\(version)"
            guard let codecName = labelSets[set]?.record.codec, let codec = try? SoftLabelCodec(parsing: codecName) else {
                problem(table, key, "soft label in a set without a (valid) codec")
                return nil
            }
            var out = [Float](repeating: 0, count: schema.classes.count)
            do {
                try soft.withUnsafeBytes { bytes in try out.withUnsafeMutableBufferPointer { try codec.decode(bytes, into: $0) } }
            } catch {
                problem(table, key, "soft label does not decode as \(codecName): \(Self.detail(error))")
                return nil
            }
            label.soft = out
        }
        return label.top1
    }

    /// A key as reports show it: ids in decimal, names as text, anything else in hex.
    static func describe(_ key: UnsafeRawBufferPointer, in table: Table) -> String {
        switch table {
        case .meta, .labelSets, .heads, .projectors: String(decoding: key, as: UTF8.self)
        case .samples, .provenance: key.count == 8 ? "\(BigEndianKey.u64(key, at: 0))" : Checksum.hex(Array(key))
        case .embeddings: key.count == 8 ? "block \(BigEndianKey.u64(key, at: 0))" : Checksum.hex(Array(key))
        case .labelBlocks where key.count == 16:
            "set \(BigEndianKey.u32(key, at: 0)) block \(BigEndianKey.u64(key, at: 4)) v\(BigEndianKey.u32(key, at: 12))"
        case .labels where key.count == 16:
            "set \(BigEndianKey.u32(key, at: 0)) sample \(BigEndianKey.u64(key, at: 4)) v\(BigEndianKey.u32(key, at: 12))"
        case .taintMembers where key.count == 12: "label \(BigEndianKey.u32(key, at: 0)) sample \(BigEndianKey.u64(key, at: 4))"
        case .labelPostings where key.count == ClassPostings.keySize:
            "set \(BigEndianKey.u32(key, at: 0)) class \(BigEndianKey.u32(key, at: 4)) v\(BigEndianKey.u32(key, at: 8)) chunk \(BigEndianKey.u64(key, at: 12))"
        default: Checksum.hex(Array(key))
        }
    }
}
