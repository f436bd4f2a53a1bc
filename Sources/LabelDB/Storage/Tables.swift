/// The named LMDB databases ("tables") of a store. `format-spec/storage.md` describes each.
///
/// Invariant: every table listed here is created when a store is created, so a store of this
/// format version always has all of them; a missing one means the directory is not a store.
enum Table: String, CaseIterable, Sendable {
    /// Store-wide records: the schema and the slot counter. Keys are ASCII names.
    case meta
    /// One row per sample. Key: id as u64 big-endian. Value: a sample record.
    case samples
    /// Embeddings in fixed-capacity blocks of consecutive slots. Key: block number as u64 big-endian.
    case embeddings
    /// Slots freed by deletes, reused by later inserts. Key: slot as u64 big-endian; empty value.
    case freeSlots = "free_slots"

    /// The position in `allCases`, used to index the environment's handle array.
    var index: Int {
        switch self {
        case .meta: 0
        case .samples: 1
        case .embeddings: 2
        case .freeSlots: 3
        }
    }
}
