import Foundation

/// The tag registry and the interned labels of one store, as read by one transaction
/// (format-spec/storage.md, "Taint labels").
///
/// Label id 0 is implicit and never stored: ``TaintLabel/public`` (no secrecy tags, no integrity
/// tags), the label of every sample imported without tags and of every sample written before
/// format 4.
struct TaintCatalog {
    /// Tag id → name (ids from 1).
    private(set) var tagNames: [UInt32: String] = [:]
    /// Name → tag id.
    private(set) var tagIDs: [String: UInt32] = [:]
    /// Label id → label; `labels[0]` is ``TaintLabel/public``. Nil for an id with no record (only
    /// in a damaged store), so such an id is never mistaken for a public label.
    private(set) var labels: [TaintLabel?] = [.public]

    /// The label with id `id`, or nil for an id the store never interned (a damaged record).
    func label(_ id: UInt32) -> TaintLabel? {
        Int(id) < labels.count ? labels[Int(id)] : nil
    }

    /// True when every tag is registered (so a clearance naming it refers to something real).
    func isRegistered(_ tag: String) -> Bool { tagIDs[tag] != nil }

    mutating func addTag(_ name: String, id: UInt32) {
        tagNames[id] = name
        tagIDs[name] = id
    }

    mutating func addLabel(_ label: TaintLabel, id: UInt32) {
        while labels.count <= Int(id) { labels.append(nil) }
        labels[Int(id)] = label
    }
}

/// The byte layout of an interned label (`taint_labels` table).
///
/// | Offset | Size | Description |
/// |---|---|---|
/// | 0 | 8 | xxh3-64 of bytes 8…end, seed = the label id |
/// | 8 | 4 | secrecy tag count S |
/// | 12 | 4 | integrity tag count I |
/// | 16 | 4·S | secrecy tag ids, ascending |
/// | 16+4S | 4·I | integrity tag ids, ascending |
enum TaintLabelRecord {
    static func encode(id: UInt32, secrecy: [UInt32], integrity: [UInt32]) -> [UInt8] {
        var body: [UInt8] = []
        appendLE(UInt32(secrecy.count), to: &body)
        appendLE(UInt32(integrity.count), to: &body)
        for tag in secrecy.sorted() { appendLE(tag, to: &body) }
        for tag in integrity.sorted() { appendLE(tag, to: &body) }
        return SealedRecord.seal(body, seed: UInt64(id))
    }

    /// The key of a label in the content index (`taint_label_index`): secrecy count u32 BE, the
    /// secrecy tag ids, then the integrity tag ids, each u32 BE and ascending.
    static func contentKey(secrecy: [UInt32], integrity: [UInt32]) -> [UInt8] {
        var key: [UInt8] = []
        BigEndianKey.append(UInt32(secrecy.count), to: &key)
        for tag in secrecy { BigEndianKey.append(tag, to: &key) }
        for tag in integrity { BigEndianKey.append(tag, to: &key) }
        return key
    }

    /// An index value: xxh3-64 of the id bytes (seed = xxh3-64 of the key), then the label id u32 LE.
    static func indexValue(key: [UInt8], id: UInt32) -> [UInt8] {
        var body: [UInt8] = []
        appendLE(id, to: &body)
        return SealedRecord.seal(body, seed: SealedRecord.seed(key: key))
    }

    static func decodeIndexValue(key: [UInt8], _ bytes: UnsafeRawBufferPointer) throws -> UInt32 {
        guard bytes.count == 12 else { throw RecordDecodingError(detail: "index entry of \(bytes.count) bytes, expected 12") }
        let body = try SealedRecord.open(bytes, seed: SealedRecord.seed(key: key))
        return UInt32(littleEndian: body.loadUnaligned(as: UInt32.self))
    }

    static func decode(id: UInt32, _ bytes: UnsafeRawBufferPointer) throws -> (secrecy: [UInt32], integrity: [UInt32]) {
        var reader = ByteReader(try SealedRecord.open(bytes, seed: UInt64(id)))
        let s = Int(try reader.u32("secrecy count"))
        let i = Int(try reader.u32("integrity count"))
        guard s <= reader.remaining / 4, i <= reader.remaining / 4, (s + i) * 4 == reader.remaining else {
            throw RecordDecodingError(detail: "tag counts \(s) + \(i) do not match \(reader.remaining) bytes")
        }
        let secrecy = try (0..<s).map { _ in try reader.u32("secrecy tag") }
        let integrity = try (0..<i).map { _ in try reader.u32("integrity tag") }
        return (secrecy, integrity)
    }
}

/// The tag registry's entries (`taint_tags`): key `n` + name → the tag id (u32 LE), and key `i` +
/// id (u32 BE) → the name. From format 5 both values are sealed with their key, since a damaged
/// name would move data into another tag (format 4 wrote them bare).
enum TagEntry {
    static func nameKey(_ name: String) -> [UInt8] { [UInt8(ascii: "n")] + Array(name.utf8) }

    static func idKey(_ id: UInt32) -> [UInt8] {
        var key: [UInt8] = [UInt8(ascii: "i")]
        BigEndianKey.append(id, to: &key)
        return key
    }

    static func idValue(key: [UInt8], id: UInt32) -> [UInt8] {
        SealedRecord.seal(withUnsafeBytes(of: id.littleEndian) { Array($0) }, seed: SealedRecord.seed(key: key))
    }

    static func nameValue(key: [UInt8], name: String) -> [UInt8] {
        SealedRecord.seal(Array(name.utf8), seed: SealedRecord.seed(key: key))
    }

    /// The body of an entry's value: opened when `sealed` (format 5), as is before.
    private static func body(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, sealed: Bool) throws -> UnsafeRawBufferPointer {
        sealed ? try SealedRecord.open(value, seed: SealedRecord.seed(key: key)) : value
    }

    /// The tag id a name entry holds.
    static func decodeID(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, sealed: Bool) throws -> UInt32 {
        let body = try body(key: key, value: value, sealed: sealed)
        guard key.count > 1, key.first == UInt8(ascii: "n"), body.count == 4 else {
            throw RecordDecodingError(detail: "malformed name entry (\(key.count)-byte key, \(body.count)-byte id)")
        }
        return UInt32(littleEndian: body.loadUnaligned(as: UInt32.self))
    }

    /// The name an id entry holds.
    static func decodeName(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, sealed: Bool) throws -> String {
        let body = try body(key: key, value: value, sealed: sealed)
        guard key.count == 5, key.first == UInt8(ascii: "i"), let name = String(bytes: body, encoding: .utf8), !name.isEmpty else {
            throw RecordDecodingError(detail: "malformed id entry (\(key.count)-byte key, \(body.count)-byte name)")
        }
        return name
    }
}

/// A taint partition entry (`taint_members`): key label id u32 BE + sample id u64 BE; value (format
/// 5) the 8-byte seal of nothing, seeded with the key, so that a damaged key no longer checks —
/// visibility is decided from these keys. Format-4 entries have empty values.
enum PartitionEntry {
    static func key(label: UInt32, sample: UInt64) -> [UInt8] {
        var key: [UInt8] = []
        BigEndianKey.append(label, to: &key)
        BigEndianKey.append(sample, to: &key)
        return key
    }

    static func value(key: [UInt8]) -> [UInt8] { SealedRecord.seal([], seed: SealedRecord.seed(key: key)) }

    /// The label and sample an entry names, once its key and (for a format-5 store, `sealed`) its
    /// value check.
    ///
    /// - Throws: ``RecordDecodingError`` or ``ChecksumMismatch``.
    static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, sealed: Bool) throws -> (label: UInt32, sample: UInt64) {
        guard key.count == 12 else { throw RecordDecodingError(detail: "key of \(key.count) bytes, expected 12") }
        if sealed || !value.isEmpty {
            guard value.count == 8 else { throw RecordDecodingError(detail: "value of \(value.count) bytes, expected 8") }
            _ = try SealedRecord.open(value, seed: SealedRecord.seed(key: key))
        }
        return (BigEndianKey.u32(key, at: 0), BigEndianKey.u64(key, at: 4))
    }
}

/// Which samples a transaction's clearance admits, built from the taint partitions once per
/// transaction: whichever of "the hidden ids" or "the visible ids" is known without listing the
/// (usually large) public partition.
enum SampleVisibility {
    /// Every sample is visible.
    case all
    /// Every sample except these.
    case hiding(Set<UInt64>)
    /// Only these samples (the clearance does not admit label 0).
    case only(Set<UInt64>)

    /// True when sample `id` (known to be stored) is visible.
    @inline(__always)
    func admits(_ id: UInt64) -> Bool {
        switch self {
        case .all: true
        case .hiding(let hidden): !hidden.contains(id)
        case .only(let visible): visible.contains(id)
        }
    }
}

/// A label row's taint depends only on its sample's label id and the version that wrote it.
struct LabelTaintKey: Hashable {
    var sample: UInt32
    var set: UInt32
    var version: Int
}

/// Per-transaction taint state: single labels looked up on demand (a point read of a tainted
/// sample reads one label record, not the catalog), the whole catalog when an operation needs
/// every label (counts, scans, interning), and the visibility of samples (built on first use).
final class TaintState {
    /// The whole catalog, once loaded.
    var full: TaintCatalog?
    /// `admitted[id]` for every interned label id, once the catalog is loaded.
    var admitted: [Bool] = []
    /// Labels read one at a time, and the tag names they needed.
    var labels: [UInt32: TaintLabel] = [0: .public]
    var tagNames: [UInt32: String] = [:]
    /// Whether the clearance admits each label id looked up.
    var admittedByID: [UInt32: Bool] = [:]
    /// Labels interned (or found interned) by this transaction.
    var internedIDs: [TaintLabel: UInt32] = [:]
    var visibility: SampleVisibility?
    /// Every tainted sample's label id, from the partitions (see `taintedSamples()`).
    var tainted: [UInt64: UInt32]?
    /// Memoised label-row taints (sample label ⊔ source), nil when not admitted.
    var labelTaints: [LabelTaintKey: TaintLabel?] = [:]
}

extension TaintLabel {
    /// No secrecy tags and no integrity tags: public data that nothing vouches for. The label of
    /// samples and label sources imported without tags (label id 0). Not ⊥, which trusts everything.
    public static let `public` = TaintLabel(secrecy: Set<String>(), integrity: Set<String>())

    /// The tags as JSON: `{"secrecy": [...], "integrity": [...]}`, sorted (`["*"]` for every tag).
    public var json: JSONValue {
        .object(["secrecy": .array(secrecy.sorted.map { .string($0) }), "integrity": .array(integrity.sorted.map { .string($0) })])
    }

    /// Parses `{"secrecy": [...], "integrity": [...]}` (either member may be missing).
    ///
    /// - Throws: ``TaintError/malformedLabel(_:)`` or ``TaintError/invalidTag(tag:in:)``.
    public init(json: JSONValue) throws {
        guard case .object(let members) = json, Set(members.keys).isSubset(of: ["secrecy", "integrity"]) else {
            throw TaintError.malformedLabel("expected {\"secrecy\": [...], \"integrity\": [...]}")
        }
        func tags(_ key: String) throws -> Set<String> {
            guard let value = members[key] else { return [] }
            guard case .array(let items) = value else { throw TaintError.malformedLabel("`\(key)` must be an array of tag names") }
            return Set(try items.map { item in
                guard case .string(let tag) = item else { throw TaintError.malformedLabel("`\(key)` must be an array of tag names") }
                return try TaintTags.validated(tag, in: key)
            })
        }
        self.init(secrecy: try tags("secrecy"), integrity: try tags("integrity"))
    }

    /// A label from comma-separated tag lists, as the CLI's `--secrecy` and `--integrity` take them.
    /// Each option may repeat.
    ///
    /// - Throws: ``TaintError/invalidTag(tag:in:)`` for an empty or malformed tag.
    public init(secrecyLists: [String], integrityLists: [String]) throws {
        self.init(secrecy: try TaintTags.parse(lists: secrecyLists), integrity: try TaintTags.parse(lists: integrityLists))
    }

    /// The tags named by this label (both parts; none for `.all`).
    var namedTags: Set<String> {
        var out = Set<String>()
        if case .tags(let s) = secrecy { out.formUnion(s) }
        if case .tags(let i) = integrity { out.formUnion(i) }
        return out
    }
}

extension TaintLabel: Codable {
    enum CodingKeys: String, CodingKey { case secrecy, integrity }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func tags(_ key: CodingKeys) throws -> TagSet {
            let list = try container.decodeIfPresent([String].self, forKey: key) ?? []
            return list == ["*"] ? .all : .tags(Set(list))
        }
        self.init(secrecy: try tags(.secrecy), integrity: try tags(.integrity))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(secrecy.sorted, forKey: .secrecy)
        try container.encode(integrity.sorted, forKey: .integrity)
    }
}

// Reading the catalog and deciding visibility.
extension Transaction {
    /// The transaction's taint state (created empty; filled on demand).
    var taint: TaintState {
        if let state = taintState { return state }
        let state = TaintState()
        taintState = state
        return state
    }

    /// The whole catalog, loaded on first use.
    func catalog() throws -> TaintCatalog {
        let state = taint
        if let full = state.full { return full }
        let full = try loadTaintCatalog()
        state.full = full
        state.admitted = full.labels.map { $0.map(clearance.admits) ?? false }
        return full
    }

    /// `admitted[id]` for every interned label id.
    func admittedLabels() throws -> [Bool] {
        _ = try catalog()
        return taint.admitted
    }

    fileprivate func loadTaintCatalog() throws -> TaintCatalog {
        var catalog = TaintCatalog()
        let sealed = store.formatVersion >= 5
        try walk(.taintTags, from: [UInt8(ascii: "i")]) { key, value in
            guard key.first == UInt8(ascii: "i") else { return false }
            do { catalog.addTag(try TagEntry.decodeName(key: key, value: value, sealed: sealed), id: BigEndianKey.u32(key, at: 1)) } catch {
                throw contextualize(error, table: .taintTags, key: "?")
            }
            return true
        }
        try walk(.taintLabels, from: nil) { key, value in
            guard key.count == 4 else {
                throw StoreError.corruptRecord(store: store.path, table: Table.taintLabels.rawValue, key: "?", detail: "key of \(key.count) bytes, expected 4")
            }
            let id = BigEndianKey.u32(key, at: 0)
            do {
                let (s, i) = try TaintLabelRecord.decode(id: id, value)
                func names(_ tags: [UInt32]) throws -> Set<String> {
                    Set(try tags.map { tag in
                        guard let name = catalog.tagNames[tag] else { throw RecordDecodingError(detail: "unknown tag id \(tag)") }
                        return name
                    })
                }
                guard id >= 1, id < 1 << 24 else { throw RecordDecodingError(detail: "label id \(id) out of range") }
                catalog.addLabel(TaintLabel(secrecy: try names(s), integrity: try names(i)), id: id)
            } catch {
                throw contextualize(error, table: .taintLabels, key: "\(id)")
            }
            return true
        }
        return catalog
    }

    /// The taint label of a stored sample's label id.
    func taintLabel(id: UInt32, sample: UInt64) throws -> TaintLabel {
        guard let label = try internedLabel(id) else {
            throw StoreError.corruptRecord(store: store.path, table: Table.samples.rawValue, key: "\(sample)", detail: "unknown taint label id \(id)")
        }
        return label
    }

    /// The interned label `id`, or nil when the store has no such label.
    func internedLabel(_ id: UInt32) throws -> TaintLabel? {
        // Label 0 needs no catalog: untainted stores never read one on the read path.
        if id == 0 { return .public }
        let state = taint
        if let known = state.labels[id] { return known }
        if let full = state.full { return full.label(id) }
        // One label record and its tags' names.
        var key: [UInt8] = []
        BigEndianKey.append(id, to: &key)
        let label = try withValue(.taintLabels, key: key) { bytes -> TaintLabel? in
            guard let bytes else { return nil }
            do {
                let (s, i) = try TaintLabelRecord.decode(id: id, bytes)
                return TaintLabel(secrecy: Set(try s.map(tagName)), integrity: Set(try i.map(tagName)))
            } catch { throw contextualize(error, table: .taintLabels, key: "\(id)") }
        }
        state.labels[id] = label
        return label
    }

    /// The name of tag `id` (memoised for the transaction).
    private func tagName(_ id: UInt32) throws -> String {
        let state = taint
        if let known = state.tagNames[id] { return known }
        let key = TagEntry.idKey(id)
        let name = try withValue(.taintTags, key: key) { bytes -> String in
            guard let bytes else { throw RecordDecodingError(detail: "unknown tag id \(id)") }
            return try key.withUnsafeBytes { try TagEntry.decodeName(key: $0, value: bytes, sealed: store.formatVersion >= 5) }
        }
        state.tagNames[id] = name
        return name
    }

    /// True when the clearance admits label id `id`.
    @inline(__always)
    func admits(labelID id: UInt32) throws -> Bool {
        if id == 0 { return clearance.requiredIntegrity.isEmpty }
        if clearance == .all { return true }
        let state = taint
        if let known = state.admittedByID[id] { return known }
        guard let label = try internedLabel(id) else {
            throw StoreError.corruptRecord(store: store.path, table: Table.taintLabels.rawValue, key: "\(id)", detail: "a sample names this label id, which is not interned")
        }
        let admitted = clearance.admits(label)
        state.admittedByID[id] = admitted
        return admitted
    }

    /// True when the clearance admits every label the store has interned, so nothing is hidden
    /// (counts may come from LMDB's own statistics, and stored statistics may be shown).
    public var seesEverything: Bool {
        get throws {
            if clearance == .all { return true }
            return try admittedLabels().allSatisfy { $0 }
        }
    }

    /// Which samples are visible, from the taint partitions (built once per transaction).
    func sampleVisibility() throws -> SampleVisibility {
        let state = taint
        if let known = state.visibility { return known }
        let visibility: SampleVisibility
        if try seesEverything {
            visibility = .all
        } else {
            // Keep the smaller side: the hidden ids when label 0 (not listed) is admitted, else the visible ones.
            let admitted = try admittedLabels()
            let collectHidden = admitted[0]
            var ids = Set<UInt64>()
            for (sample, label) in try taintedSamples() {
                // An id beyond the catalog is damage that `verify` reports; here it hides the sample.
                let ok = Int(label) < admitted.count && admitted[Int(label)]
                if ok != collectHidden { ids.insert(sample) }
            }
            visibility = collectHidden ? .hiding(ids) : .only(ids)
        }
        state.visibility = visibility
        return visibility
    }

    /// Every sample whose label is not 0, with its label id, from one walk of the partitions (one
    /// cursor however many labels there are; cached for the transaction). Samples not listed carry
    /// label 0.
    func taintedSamples() throws -> [UInt64: UInt32] {
        let state = taint
        if let known = state.tainted { return known }
        var out: [UInt64: UInt32] = [:]
        let sealed = store.formatVersion >= 5
        try walk(.taintMembers, from: nil) { key, value in
            do {
                let entry = try PartitionEntry.decode(key: key, value: value, sealed: sealed)
                out[entry.sample] = entry.label
            } catch { throw contextualize(error, table: .taintMembers, key: "?") }
            return true
        }
        // Visibility is decided from these entries, so a lost one would make a hidden sample
        // public. The recorded count catches that and fails closed.
        if let recorded = try recordedPartitionCount(), recorded != out.count {
            throw StoreError.corruptRecord(store: store.path, table: Table.taintMembers.rawValue, key: "*",
                                           detail: "\(out.count) partition entries for \(recorded) tainted samples recorded; run verify")
        }
        state.tainted = out
        return out
    }

    /// The number of `taint_members` entries the store recorded (format 5), nil before format 5.
    /// In a write transaction, this transaction's own changes are included.
    func recordedPartitionCount() throws -> Int? {
        let stored: UInt64? = try withValue(.meta, name: MetaKey.taintedSamples) { bytes in
            guard let bytes else { return nil }
            do { return try CounterRecord.decode(bytes) } catch { throw contextualize(error, table: .meta, key: MetaKey.taintedSamples) }
        }
        guard let stored else {
            if store.formatVersion >= 5 {
                throw StoreError.corruptRecord(store: store.path, table: Table.meta.rawValue, key: MetaKey.taintedSamples, detail: "missing")
            }
            return nil
        }
        guard stored <= UInt64(Int.max) else {
            throw StoreError.corruptRecord(store: store.path, table: Table.meta.rawValue, key: MetaKey.taintedSamples, detail: "count \(stored) out of range")
        }
        return Int(stored) + ((self as? WriteTransaction)?.partitionDelta ?? 0)
    }

    /// Calls `body` with every sample id in the partition of label `label` (never label 0).
    func members(of label: UInt32, _ body: (UInt64) throws -> Void) throws {
        var prefix: [UInt8] = []
        BigEndianKey.append(label, to: &prefix)
        let sealed = store.formatVersion >= 5
        try walk(.taintMembers, from: prefix) { key, value in
            guard key.count == 12, key.prefix(4).elementsEqual(prefix) else { return false }
            do { try body(try PartitionEntry.decode(key: key, value: value, sealed: sealed).sample) } catch {
                throw contextualize(error, table: .taintMembers, key: "label \(label)")
            }
            return true
        }
    }

    /// The interned label ids whose label satisfies `predicate`.
    func labelIDs(where predicate: (TaintLabel) -> Bool) throws -> [UInt32] {
        try catalog().labels.enumerated().filter { $0.element.map(predicate) ?? false }.map { UInt32($0.offset) }
    }

    /// The visible samples whose taint label names `tag` (in its secrecy or integrity part), from
    /// the taint partitions (no scan of the samples).
    public func samples(taggedWith tag: String) throws -> Set<UInt64> {
        // The partitions answer alone here: a lost entry must fail the query, not drop a row.
        if let recorded = try recordedPartitionCount(), try recorded != entries(.taintMembers) {
            throw StoreError.corruptRecord(store: store.path, table: Table.taintMembers.rawValue, key: "*",
                                           detail: "\(try entries(.taintMembers)) partition entries for \(recorded) tainted samples recorded; run verify")
        }
        var out = Set<UInt64>()
        let admitted = try admittedLabels()
        for id in try labelIDs(where: { $0.namedTags.contains(tag) }) where id != 0 && admitted[Int(id)] {
            try members(of: id) { out.insert($0) }
        }
        return out
    }

    /// Every registered tag name, sorted. (The registry is not secret: see the format spec's
    /// security section.)
    public func registeredTags() throws -> [String] {
        try catalog().tagIDs.keys.sorted()
    }

    /// Throws when `clearance` names a tag the store has never registered, so a typo does not
    /// silently leave a reader with less (or, for integrity, more) than intended.
    ///
    /// - Throws: ``TaintError/unknownTag(_:)``.
    public func validate(_ clearance: Clearance) throws {
        let catalog = try catalog()
        var named = clearance.requiredIntegrity
        if case .tags(let s) = clearance.allowedSecrecy { named.formUnion(s) }
        if let unknown = named.sorted().first(where: { !catalog.isRegistered($0) }) { throw TaintError.unknownTag(unknown) }
    }
}

// Interning and partitions.
extension WriteTransaction {
    /// The id of `label`, interning it (and registering its tags) when new.
    func intern(_ label: TaintLabel) throws -> UInt32 {
        if label == .public { return 0 }
        let state = taint
        if let id = state.internedIDs[label] { return id }
        guard case .tags(let secrecy) = label.secrecy, case .tags(let integrity) = label.integrity else {
            throw TaintError.malformedLabel("a stored label names its tags; `*` (every tag) cannot be stored")
        }
        let s = try secrecy.sorted().map(internTag).sorted(), i = try integrity.sorted().map(internTag).sorted()
        // The content index finds an existing label without reading the catalog.
        let contentKey = TaintLabelRecord.contentKey(secrecy: s, integrity: i)
        let existing: UInt32? = try withValue(.taintLabelIndex, key: contentKey) { bytes in
            guard let bytes else { return nil }
            do {
                let id = try TaintLabelRecord.decodeIndexValue(key: contentKey, bytes)
                // The entry must name a label record with exactly this content, or a damaged
                // index could give a sample a wrong (less restrictive) label.
                var key: [UInt8] = []
                BigEndianKey.append(id, to: &key)
                let matches = try withValue(.taintLabels, key: key) { record -> Bool in
                    guard let record else { return false }
                    let (rs, ri) = try TaintLabelRecord.decode(id: id, record)
                    return rs == s && ri == i
                }
                guard matches else { throw RecordDecodingError(detail: "index entry names label \(id), whose record differs") }
                return id
            } catch { throw contextualize(error, table: .taintLabelIndex, key: "\(label)") }
        }
        if let existing {
            state.internedIDs[label] = existing
            return existing
        }
        let id: UInt32
        if let last = try lastRawKey(.taintLabels) {
            guard last.count == 4 else {
                throw StoreError.corruptRecord(store: store.path, table: Table.taintLabels.rawValue, key: "?", detail: "key of \(last.count) bytes, expected 4")
            }
            id = last.withUnsafeBytes { BigEndianKey.u32($0, at: 0) } + 1
        } else {
            id = 1
        }
        var key: [UInt8] = []
        BigEndianKey.append(id, to: &key)
        try put(.taintLabels, key: key, bytes: TaintLabelRecord.encode(id: id, secrecy: s, integrity: i))
        try put(.taintLabelIndex, key: contentKey, bytes: TaintLabelRecord.indexValue(key: contentKey, id: id))
        state.internedIDs[label] = id
        state.labels[id] = label
        if state.full != nil {
            state.full!.addLabel(label, id: id)
            state.admitted.append(clearance.admits(label))
        }
        state.visibility = nil
        return id
    }

    /// Registers the tags among `names` the store does not have yet (a corpus keeps one registry
    /// in every shard); a tag already registered keeps its id.
    func registerTags(_ names: [String]) throws {
        for name in names { _ = try internTag(name) }
    }

    /// The id of tag `name`, registering it when new.
    private func internTag(_ name: String) throws -> UInt32 {
        let state = taint
        let nameKey = TagEntry.nameKey(name)
        let existing: UInt32? = try withValue(.taintTags, key: nameKey) { bytes in
            guard let bytes else { return nil }
            do { return try nameKey.withUnsafeBytes { try TagEntry.decodeID(key: $0, value: bytes, sealed: store.formatVersion >= 5) } } catch {
                throw contextualize(error, table: .taintTags, key: name)
            }
        }
        if let existing { return existing }
        // Tag ids count up from 1: one past the largest `i` key.
        let largest: UInt32 = try withLastEntry(.taintTags, atOrBefore: [UInt8(ascii: "i"), 0xFF, 0xFF, 0xFF, 0xFF]) { entry in
            guard let entry, entry.key.count == 5, entry.key.first == UInt8(ascii: "i") else { return 0 }
            return BigEndianKey.u32(entry.key, at: 1)
        }
        let id = largest + 1
        try put(.taintTags, key: nameKey, bytes: TagEntry.idValue(key: nameKey, id: id))
        let idKey = TagEntry.idKey(id)
        try put(.taintTags, key: idKey, bytes: TagEntry.nameValue(key: idKey, name: name))
        state.tagNames[id] = name
        state.full?.addTag(name, id: id)
        return id
    }

    /// Records the partition count this transaction leaves (called once, before commit): the
    /// stored count plus this transaction's changes, never a recount, so damage done before it
    /// stays detectable.
    func recordPartitionCount() throws {
        guard partitionDelta != 0, let count = try recordedPartitionCount() else { return }
        guard count >= 0 else {
            throw StoreError.corruptRecord(store: store.path, table: Table.meta.rawValue, key: MetaKey.taintedSamples, detail: "the count would fall below zero")
        }
        try put(.meta, name: MetaKey.taintedSamples, bytes: CounterRecord.encoded(UInt64(count)))
        partitionDelta = 0
    }

    /// Moves sample `id` from partition `old` to partition `new` (label 0 is not listed).
    func movePartition(sample id: UInt64, from old: UInt32?, to new: UInt32) throws {
        guard old != new else { return }
        if let old, old != 0, try delete(.taintMembers, key: PartitionEntry.key(label: old, sample: id)) { partitionDelta -= 1 }
        if new != 0 {
            let key = PartitionEntry.key(label: new, sample: id)
            try put(.taintMembers, key: key, bytes: PartitionEntry.value(key: key))
            partitionDelta += 1
        }
        taintState?.visibility = nil
        taintState?.tainted = nil
    }
}
