/// Errors of the store layer. Each case carries what a user needs to act on it.
///
/// ``LMDBError`` covers failures of LMDB itself; ``InputError`` covers malformed input files.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The directory does not exist or does not hold a LabelDB store.
    case notAStore(path: String, reason: String)
    /// `create` found a store (or other files) already in the directory.
    case alreadyExists(path: String)
    /// The store is open read-only in this process, and read-write access was asked for.
    case alreadyOpenReadOnly(path: String)
    /// The store was written by a newer LabelDB whose format this one cannot read.
    case incompatibleFormat(path: String, readVersion: Int, writeVersion: Int, supported: Int)
    /// A write was attempted through a store opened read-only (or whose format is newer than this code writes).
    case readOnly(path: String)
    /// A record did not decode: truncated, impossible lengths, unknown versions.
    case corruptRecord(store: String, table: String, key: String, detail: String)
    /// A record's stored checksum does not match its bytes.
    case checksumMismatch(store: String, table: String, key: String, expected: UInt64, found: UInt64)
    /// The schema given to `create` is invalid.
    case invalidSchema(String)
    /// A sample to be written is invalid (wrong dimension, non-finite values, bad metadata, …).
    case invalidSample(id: UInt64?, reason: String)
    /// The same id appears twice in one batch.
    case duplicateID(UInt64)
    /// An insert found the id already stored and replacing was not allowed.
    case idExists(UInt64)
    /// A replace found the id held by a sample the clearance does not see, which it may not
    /// overwrite (ids are one namespace: a side channel the format spec lists).
    case idHeldByHiddenSample(UInt64)
    /// The id is not in the store.
    case sampleNotFound(UInt64)
    /// A file-system operation around the store failed.
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case .notAStore(let path, let reason):
            "\(path) is not a LabelDB store: \(reason)"
        case .alreadyExists(let path):
            "\(path) already exists and is not empty; refusing to create a store there"
        case .alreadyOpenReadOnly(let path):
            "\(path) is already open read-only in this process; close it before opening it for writing"
        case .incompatibleFormat(let path, let readVersion, let writeVersion, let supported):
            "\(path) has format read version \(readVersion) (write version \(writeVersion)); this LabelDB reads format versions up to \(supported)"
        case .readOnly(let path):
            "\(path) is open read-only; writes are not allowed"
        case .corruptRecord(let store, let table, let key, let detail):
            "\(store): table `\(table)`, key \(key): corrupt record: \(detail)"
        case .checksumMismatch(let store, let table, let key, let expected, let found):
            "\(store): table `\(table)`, key \(key): checksum mismatch, expected \(Checksum.hex(expected)), found \(Checksum.hex(found))"
        case .invalidSchema(let reason):
            "invalid schema: \(reason)"
        case .invalidSample(let id, let reason):
            id.map { "sample \($0): \(reason)" } ?? "invalid sample: \(reason)"
        case .duplicateID(let id):
            "id \(id) appears more than once in the batch"
        case .idExists(let id):
            "id \(id) is already in the store (replace it explicitly: the replace mode overwrites)"
        case .idHeldByHiddenSample(let id):
            "id \(id) is held by a sample this clearance does not see; it cannot be replaced (choose other ids)"
        case .sampleNotFound(let id):
            "sample \(id) not found"
        case .io(let path, let reason):
            "\(path): \(reason)"
        }
    }
}
