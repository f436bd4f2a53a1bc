/// The named LMDB databases ("tables") of a store. `format-spec/storage.md` describes each.
///
/// Invariant: every table listed here is created when a store is created or migrated, so a
/// writable store always has all of them. A store of an older format opened read-only lacks the
/// tables added after its version; reads treat those as empty.
enum Table: String, CaseIterable, Sendable {
    /// Store-wide records: the schema and the slot counter. Keys are ASCII names.
    case meta
    /// One row per sample. Key: id as u64 big-endian. Value: a sample record.
    case samples
    /// Embeddings in fixed-capacity blocks of consecutive slots. Key: block number as u64 big-endian.
    case embeddings
    /// Slots freed by deletes, reused by later inserts. Key: slot as u64 big-endian; empty value.
    case freeSlots = "free_slots"
    /// Label sets by name. Key: the name in UTF-8. Value: a label set record. (Format 2.)
    case labelSets = "label_sets"
    /// One record per label-set version. Key: set id u32 BE + version u32 BE. (Format 2.)
    case labelVersions = "label_versions"
    /// Label rows of formats 2–5, one entry each. Key: set id u32 BE + sample id u64 BE + version
    /// u32 BE. Retired by format 6 (the label blocks replace it): migrating empties it.
    case labels
    /// Top-1 class index of formats 2–5. Key: set id u32 BE + class u32 BE + inverted confidence
    /// u32 BE + sample id u64 BE + from-version u32 BE. Value: checksum and until-version. Retired
    /// by format 6 (the class postings replace it): migrating empties it, new stores lack it.
    case labelIndex = "label_index"
    /// Base heads W0 by name. Key: the name in UTF-8. Value: checksum, d, C, d × C f32. (Format 3.)
    case heads
    /// Projectors by name. Key: the name in UTF-8. Value: a projector record. (Format 3.)
    case projectors
    /// One record per projector version. Key: projector id u32 BE + version u32 BE. (Format 3.)
    case projectorVersions = "projector_versions"
    /// Projector parameters. Key: projector id u32 BE + version u32 BE. (Format 3.)
    case projectorParameters = "projector_parameters"
    /// Corrections. Key: projector id u32 BE + version u32 BE + sample id u64 BE. (Format 3.)
    case projectorCorrections = "projector_corrections"
    /// The provenance log. Key: record number u64 BE (from 1). Value: own hash, previous hash, JSON. (Format 3.)
    case provenance
    /// The tag registry. Key `n` + name → tag id u32 LE; key `i` + tag id u32 BE → the name. (Format 4.)
    case taintTags = "taint_tags"
    /// Interned taint labels. Key: label id u32 BE (from 1). Value: a taint label record. (Format 4.)
    case taintLabels = "taint_labels"
    /// Taint partitions: which samples carry which label. Key: label id u32 BE + sample id u64 BE;
    /// empty value. Samples with label 0 (public, unvouched) are not listed. (Format 4.)
    case taintMembers = "taint_members"
    /// Interned labels by content. Key: secrecy count u32 BE + secrecy tag ids + integrity tag
    /// ids (u32 BE, ascending). Value: checksum and label id. (Format 4.)
    case taintLabelIndex = "taint_label_index"
    /// Class postings: the slots of the samples whose row of a version has a top-1 class. Key:
    /// set id u32 BE + class u32 BE + version u32 BE + chunk (slot ÷ 65,536) u64 BE. Value:
    /// checksum and u16 slot offsets, ascending. (Format 6.)
    case labelPostings = "label_postings"
    /// Label rows packed by slot: the rows one version wrote for 4,096 consecutive slots. Key: set
    /// id u32 BE + block (slot ÷ 4,096) u64 BE + version u32 BE. (Format 6.)
    case labelBlocks = "label_blocks"
    /// The samples each projector version was fitted on, by slot. Key: projector id u32 BE +
    /// version u32 BE + block (slot ÷ 4,096) u64 BE. Value: checksum and a 512-byte bitmap.
    /// (Format 7.)
    case projectorFitted = "projector_fitted"

    /// The position in `allCases`, used to index the environment's handle array.
    var index: Int {
        switch self {
        case .meta: 0
        case .samples: 1
        case .embeddings: 2
        case .freeSlots: 3
        case .labelSets: 4
        case .labelVersions: 5
        case .labels: 6
        case .labelIndex: 7
        case .heads: 8
        case .projectors: 9
        case .projectorVersions: 10
        case .projectorParameters: 11
        case .projectorCorrections: 12
        case .provenance: 13
        case .taintTags: 14
        case .taintLabels: 15
        case .taintMembers: 16
        case .taintLabelIndex: 17
        case .labelPostings: 18
        case .labelBlocks: 19
        case .projectorFitted: 20
        }
    }

    /// The format version that added the table. A store of an older format lacks it until migrated.
    var introducedIn: Int {
        switch self {
        case .meta, .samples, .embeddings, .freeSlots: 1
        case .labelSets, .labelVersions, .labels, .labelIndex: 2
        case .heads, .projectors, .projectorVersions, .projectorParameters, .projectorCorrections, .provenance: 3
        case .taintTags, .taintLabels, .taintMembers, .taintLabelIndex: 4
        case .labelPostings, .labelBlocks: 6
        case .projectorFitted: 7
        }
    }

    /// The format version that retired the table (nil while current): a store of that format or
    /// later need not have it, and holds nothing in it.
    var retiredIn: Int? { self == .labelIndex || self == .labels ? 6 : nil }

    /// True when a store of format `version` must have the table.
    func isRequired(inFormat version: Int) -> Bool {
        introducedIn <= version && (retiredIn.map { version < $0 } ?? true)
    }
}
