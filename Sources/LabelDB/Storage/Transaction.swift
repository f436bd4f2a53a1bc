import CLMDB

/// What a read transaction decodes once and reuses: label sets and loaded projectors, which
/// every batch read resolves (their JSON records cost tens of microseconds to decode).
final class SnapshotCache {
    var labelSets: [String: LabelSet?] = [:]
    var projectors: [ProjectorReference: LoadedProjector] = [:]
    /// The label blocks of one (set, block number, version): every version of the block at or
    /// before it, newest first. The bytes point into the map, which a read transaction never
    /// changes; each block's header is checked when it is first read, and rows one by one.
    var labelBlocks: [LabelBlockCacheKey: [CachedLabelBlock]] = [:]
}

/// One version of a label block in ``SnapshotCache/labelBlocks``: its key and bytes, and its
/// view once its header was checked.
struct CachedLabelBlock {
    var version: Int
    var key: [UInt8]
    var bytes: UnsafeRawBufferPointer
    var view: LabelBlockView?
}

/// The key of ``SnapshotCache/labelBlocks``.
struct LabelBlockCacheKey: Hashable {
    var set: UInt32
    var block: UInt64
    var version: Int
}

/// A read transaction: a consistent snapshot of the store.
///
/// You get one only inside ``Store/read(_:)`` or ``Store/write(_:)``; it must not escape the
/// closure. Using it after the closure returned traps.
///
/// Lifetime: buffers returned by the `withBorrowed…` methods point into LMDB's memory map and are
/// valid only inside the closure that receives them (LMDB: "values returned from the database are
/// valid only until a subsequent update operation, or the end of the transaction").
public class Transaction {
    /// The `MDB_txn*`; nil once the transaction ended.
    var txn: OpaquePointer?
    let env: Environment
    /// The store this transaction reads.
    public let store: Store

    /// The id of the committed state this transaction reads (LMDB's transaction id): equal in two
    /// transactions exactly when they read the same commit of one environment (or of byte copies).
    var snapshotID: UInt64 {
        guard let txn else { preconditionFailure("LabelDB: a transaction was used outside its closure") }
        return UInt64(mdb_txn_id(txn))
    }
    /// What this transaction may see: samples, labels and projectors whose taint label does not
    /// flow to it are invisible to every read (not returned, not counted).
    public let clearance: Clearance
    /// Set when an LMDB call returned `MDB_MAP_FULL`: the write must be replayed after growing.
    var sawMapFull = false
    /// The taint catalog and visibility, loaded on first use (see `taint`).
    var taintState: TaintState?
    /// Records decoded once per read transaction (its snapshot never changes); nil in a write
    /// transaction, whose own changes would make them stale.
    lazy var snapshotCache: SnapshotCache? = self is WriteTransaction ? nil : SnapshotCache()
    /// Whether label rows are packed (see `packedLabels`), read once per transaction.
    var packedLabelsMemo: Bool?

    init(store: Store, env: Environment, txn: OpaquePointer, clearance: Clearance) {
        self.store = store
        self.env = env
        self.txn = txn
        self.clearance = clearance
    }

    /// The live transaction pointer; traps if the transaction escaped its closure.
    @inline(__always)
    var handle: OpaquePointer {
        guard let txn else { preconditionFailure("LabelDB: a transaction was used outside its closure") }
        return txn
    }

    /// Funnel for LMDB calls made inside this transaction; remembers `MDB_MAP_FULL`.
    @inline(__always)
    func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
        if code != 0 {
            if code == MDB_MAP_FULL { sawMapFull = true }
            throw LMDBError(code: code, call: call())
        }
    }

    /// Looks up the raw `key` in `table` and passes the value (borrowed from the map) to `body`,
    /// or nil when the key is absent.
    @inline(__always)
    func withValue<T>(
        _ table: Table, rawKey: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws -> T
    ) throws -> T {
        guard let dbi = env.dbi(table) else { return try body(nil) }
        var mdbKey = MDB_val(mv_size: rawKey.count, mv_data: UnsafeMutableRawPointer(mutating: rawKey.baseAddress))
        var value = MDB_val()
        let rc = mdb_get(handle, dbi, &mdbKey, &value)
        if rc == MDB_NOTFOUND { return try body(nil) }
        try check(rc, "mdb_get(\(table.rawValue))")
        return try body(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
    }

    /// Looks up the u64 key `key` (stored big-endian).
    @inline(__always)
    func withValue<T>(_ table: Table, key: UInt64, _ body: (UnsafeRawBufferPointer?) throws -> T) throws -> T {
        var keyBytes = key.bigEndian
        return try withUnsafeBytes(of: &keyBytes) { try withValue(table, rawKey: $0, body) }
    }

    /// Looks up a byte-string key.
    func withValue<T>(_ table: Table, key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> T) throws -> T {
        try key.withUnsafeBytes { try withValue(table, rawKey: $0, body) }
    }

    /// Looks up an ASCII-named key.
    func withValue<T>(_ table: Table, name: String, _ body: (UnsafeRawBufferPointer?) throws -> T) throws -> T {
        try withValue(table, key: Array(name.utf8), body)
    }

    /// The number of entries in `table` (`mdb_stat`'s `ms_entries`), without a scan.
    func entries(_ table: Table) throws -> Int {
        guard let dbi = env.dbi(table) else { return 0 }
        var stat = MDB_stat()
        try check(mdb_stat(handle, dbi, &stat), "mdb_stat(\(table.rawValue))")
        return stat.ms_entries
    }

    /// Walks `table` in key order from the first key ≥ `start` (from the first key when nil),
    /// passing each borrowed key and value to `body` until it returns false.
    ///
    /// Keys out of order are reported as damage (`checkingOrder`; `verify` turns it off to report
    /// them itself, record by record).
    func walk(
        _ table: Table, from start: [UInt8]?, checkingOrder: Bool = true,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        guard let dbi = env.dbi(table) else { return }
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var startKey = start ?? []
        try startKey.withUnsafeMutableBytes { k in
            var key = MDB_val(mv_size: k.count, mv_data: k.baseAddress)
            var value = MDB_val()
            var rc = start == nil ? mdb_cursor_get(cursor, &key, &value, MDB_FIRST) : mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
            if rc == 0, start != nil {
                // LMDB's branch keys carry no checksum: a damaged one can send the seek past
                // entries ≥ start. The entry before the one found must be below start.
                var previousKey = MDB_val(), previousValue = MDB_val()
                let previousRC = mdb_cursor_get(cursor, &previousKey, &previousValue, MDB_PREV)
                if previousRC != 0 && previousRC != MDB_NOTFOUND { try check(previousRC, "mdb_cursor_get(\(table.rawValue))") }
                if previousRC == 0 {
                    let previous = UnsafeRawBufferPointer(start: previousKey.mv_data, count: previousKey.mv_size)
                    guard previous.lexicographicallyPrecedes(UnsafeRawBufferPointer(k)) else {
                        throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "*", detail: "a seek skipped entries: the B-tree is damaged; run verify")
                    }
                    rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
                } else {
                    // Nothing before it: position the cursor on the entry found again.
                    rc = mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
                }
            }
            try step(cursor, &key, &value, from: rc, by: MDB_NEXT, table: table, checkingOrder: checkingOrder, body)
        }
    }

    /// Checks that the entry a backward seek found (`key`, the greatest ≤ `target`) is right: ≤ the
    /// target, and the entry after it > the target. LMDB's branch keys carry no checksum, so a
    /// damaged one could send the seek to an older entry. Leaves the cursor on the entry.
    private func checkBackwardSeek(
        _ cursor: OpaquePointer?, _ key: inout MDB_val, _ value: inout MDB_val, target: UnsafeRawBufferPointer, table: Table,
        after: ((UnsafeRawBufferPointer?) throws -> Void)?
    ) throws {
        // The entry found stays mapped for the whole walk (nothing is written before `body` runs),
        // so it needs no copy.
        let foundKey = key
        let found = UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size)
        let damaged = StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "*", detail: "a seek went astray: the B-tree is damaged; run verify")
        guard !target.lexicographicallyPrecedes(found) else { throw damaged }
        var steps = 0
        var nextKey = MDB_val(), nextValue = MDB_val()
        let rc = mdb_cursor_get(cursor, &nextKey, &nextValue, MDB_NEXT)
        if rc == 0 {
            steps = 1
            let next = UnsafeRawBufferPointer(start: nextKey.mv_data, count: nextKey.mv_size)
            guard target.lexicographicallyPrecedes(next) else { throw damaged }
            try after?(next)
            // One key further must follow it in turn: a damaged key right after the target (a row
            // moved out of place) shows as keys out of order here.
            var furtherKey = MDB_val(), furtherValue = MDB_val()
            if mdb_cursor_get(cursor, &furtherKey, &furtherValue, MDB_NEXT) == 0 {
                steps = 2
                guard next.lexicographicallyPrecedes(UnsafeRawBufferPointer(start: furtherKey.mv_data, count: furtherKey.mv_size)) else { throw damaged }
            }
        } else if rc != MDB_NOTFOUND {
            try check(rc, "mdb_cursor_get(\(table.rawValue))")
        } else {
            try after?(nil)
        }
        // Back onto the entry found: step back over the entries read when both steps succeeded (no
        // second descent of the tree), else seek it again (a failed MDB_NEXT leaves the cursor where
        // MDB_PREV would skip it).
        if steps == 2 {
            var backKey = MDB_val(), backValue = MDB_val()
            if mdb_cursor_get(cursor, &backKey, &backValue, MDB_PREV) == 0,
               mdb_cursor_get(cursor, &backKey, &value, MDB_PREV) == 0,
               backKey.mv_data == foundKey.mv_data, backKey.mv_size == foundKey.mv_size {
                key = backKey
                return
            }
        }
        var search = foundKey
        try check(mdb_cursor_get(cursor, &search, &value, MDB_SET_KEY), "mdb_cursor_get(\(table.rawValue))")
        key = search
    }

    /// Passes each entry from the cursor's position (`rc`, the result of positioning it) to
    /// `body`, moving by `op`, until `body` returns false or the table ends.
    private func step(
        _ cursor: OpaquePointer?, _ key: inout MDB_val, _ value: inout MDB_val, from rc: Int32, by op: MDB_cursor_op, table: Table,
        checkingOrder: Bool = true, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var rc = rc
        // Keys must come strictly in order: a damaged key out of place would otherwise be read
        // as a row that point lookups cannot find. In a read transaction the previous key stays
        // valid (pages do not change under it); a write transaction's body may change pages.
        let checkOrder = checkingOrder && !(self is WriteTransaction)
        var previous: UnsafeRawBufferPointer? = nil
        while rc == 0 {
            let keyBytes = UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size)
            let valueBytes = UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)
            if checkOrder, let previous, !(op == MDB_NEXT ? previous.lexicographicallyPrecedes(keyBytes) : keyBytes.lexicographicallyPrecedes(previous)) {
                throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "*", detail: "keys out of order: the B-tree is damaged; run verify")
            }
            previous = keyBytes
            if try !body(keyBytes, valueBytes) {
                // The key a walk stops at must be in order with the one after it too: a damaged
                // key at the start of a range would otherwise end the walk before the range.
                var nextKey = MDB_val(), nextValue = MDB_val()
                if checkOrder, mdb_cursor_get(cursor, &nextKey, &nextValue, op) == 0 {
                    let next = UnsafeRawBufferPointer(start: nextKey.mv_data, count: nextKey.mv_size)
                    guard op == MDB_NEXT ? keyBytes.lexicographicallyPrecedes(next) : next.lexicographicallyPrecedes(keyBytes) else {
                        throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "*", detail: "keys out of order: the B-tree is damaged; run verify")
                    }
                }
                return
            }
            rc = mdb_cursor_get(cursor, &key, &value, op)
        }
        if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get(\(table.rawValue))") }
    }

    /// Walks `table` in key order from the first key ≥ `start` (u64 big-endian keys), passing each
    /// key and borrowed value to `body` until it returns false.
    func forEach(
        _ table: Table, from start: UInt64 = 0,
        _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try walk(table, from: start == 0 ? nil : BigEndianKey.u64(start)) { key, value in
            // Untrusted: a key of the wrong size means the table is damaged, not a trap.
            guard key.count == 8 else {
                throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "?", detail: "key of \(key.count) bytes, expected 8")
            }
            return try body(UInt64(bigEndian: key.loadUnaligned(as: UInt64.self)), value)
        }
    }

    /// Passes the entry with the greatest key ≤ `key` to `body` (nil when there is none).
    func withLastEntry<T>(
        _ table: Table, atOrBefore key: [UInt8],
        _ body: ((key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)?) throws -> T
    ) throws -> T {
        var result: T? = nil
        try walkBackward(table, atOrBefore: key) { k, v in
            result = try body((k, v))
            return false
        }
        if let result { return result }
        return try body(nil)
    }

    /// Walks `table` in descending key order from the greatest key ≤ `key`, passing each borrowed
    /// key and value to `body` until it returns false.
    /// `after`, when given, sees the key right after the one found (nil at the table's end), so a
    /// caller can refuse what may not follow its target there.
    func walkBackward(
        _ table: Table, atOrBefore key: [UInt8], after: ((UnsafeRawBufferPointer?) throws -> Void)? = nil,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        guard let dbi = env.dbi(table) else { return }
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var search = key
        try search.withUnsafeMutableBytes { k in
            var mdbKey = MDB_val(mv_size: k.count, mv_data: k.baseAddress)
            var value = MDB_val()
            var rc = mdb_cursor_get(cursor, &mdbKey, &value, MDB_SET_RANGE)
            if rc == 0 {
                let found = UnsafeRawBufferPointer(start: mdbKey.mv_data, count: mdbKey.mv_size)
                if !found.elementsEqual(UnsafeRawBufferPointer(k)) {
                    rc = mdb_cursor_get(cursor, &mdbKey, &value, MDB_PREV)
                }
            } else if rc == MDB_NOTFOUND {
                rc = mdb_cursor_get(cursor, &mdbKey, &value, MDB_LAST)
            }
            if rc == 0 { try checkBackwardSeek(cursor, &mdbKey, &value, target: UnsafeRawBufferPointer(k), table: table, after: after) }
            try step(cursor, &mdbKey, &value, from: rc, by: MDB_PREV, table: table, body)
        }
    }

    /// The largest key of `table` (any length), copied, or nil when it is empty.
    func lastRawKey(_ table: Table) throws -> [UInt8]? {
        guard let dbi = env.dbi(table) else { return nil }
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val(), value = MDB_val()
        let rc = mdb_cursor_get(cursor, &key, &value, MDB_LAST)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_cursor_get(\(table.rawValue))")
        return Array(UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size))
    }

    /// The largest u64 key in `table`, or nil when it is empty.
    func lastKey(_ table: Table) throws -> UInt64? {
        guard let key = try lastRawKey(table) else { return nil }
        guard key.count == 8 else {
            throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "?", detail: "key of \(key.count) bytes, expected 8")
        }
        return key.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
    }
}

/// A write transaction: everything a ``Transaction`` reads, plus changes that become visible to
/// other readers only when ``Store/write(_:)`` commits.
///
/// The closure that receives it may run more than once (when the map must grow, LMDB's
/// transaction is aborted and the closure replayed), so it must not have side effects outside
/// the store that cannot be repeated.
public final class WriteTransaction: Transaction {
    /// The write sequence, once this transaction has taken one (see `writeSequence()`).
    var cachedWriteSequence: UInt64?
    /// The provenance record this transaction will append, when the caller described it.
    var describedProvenance: ProvenanceRecord?
    /// The number that record will have, once something asked for it.
    var reservedProvenanceID: UInt64?
    /// What this transaction changed, for the record written when the caller described nothing.
    var changeSummary: [String: Int] = [:]
    /// The ids this transaction deleted or relabelled, by kind, for its record (``RecordedIDs``).
    var touchedIDs: [String: [UInt64]] = [:]
    /// Entries this transaction added to (positive) or removed from `taint_members`.
    var partitionDelta = 0

    /// Stores `value` under the u64 key `key`, reserving `size` bytes and letting `fill` write
    /// them in place (`MDB_RESERVE`), so large values are not copied twice.
    ///
    /// `append` uses `MDB_APPEND`: the caller promises `key` is greater than every key in the
    /// table, which lets LMDB fill pages completely instead of splitting them in half.
    /// The table's handle; a writable store has every table (created or migrated on open).
    private func writableDBI(_ table: Table) -> MDB_dbi {
        guard let dbi = env.dbi(table) else { preconditionFailure("LabelDB: table \(table.rawValue) missing in a writable store") }
        return dbi
    }

    /// Stores a value under the raw `key`, reserving `size` bytes and letting `fill` write them in
    /// place (`MDB_RESERVE`), so large values are not copied twice.
    ///
    /// `append` uses `MDB_APPEND`: the caller promises `key` is greater than every key in the
    /// table, which lets LMDB fill pages completely instead of splitting them in half.
    func put(
        _ table: Table, rawKey: UnsafeRawBufferPointer, size: Int, append: Bool = false,
        _ fill: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws {
        var mdbKey = MDB_val(mv_size: rawKey.count, mv_data: UnsafeMutableRawPointer(mutating: rawKey.baseAddress))
        var value = MDB_val(mv_size: size, mv_data: nil)
        var flags = UInt32(MDB_RESERVE)
        if append { flags |= UInt32(MDB_APPEND) }
        try check(mdb_put(handle, writableDBI(table), &mdbKey, &value, flags), "mdb_put(\(table.rawValue))")
        try fill(UnsafeMutableRawBufferPointer(start: value.mv_data, count: size))
    }

    /// Stores a value under the u64 key `key` (big-endian); see ``put(_:rawKey:size:append:_:)``.
    func put(
        _ table: Table, key: UInt64, size: Int, append: Bool = false,
        _ fill: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws {
        var keyBytes = key.bigEndian
        try withUnsafeBytes(of: &keyBytes) { try put(table, rawKey: $0, size: size, append: append, fill) }
    }

    /// Stores `bytes` under a byte-string key.
    func put(_ table: Table, key: [UInt8], bytes: [UInt8], append: Bool = false) throws {
        try key.withUnsafeBytes { k in
            try put(table, rawKey: k, size: bytes.count, append: append) { out in
                bytes.withUnsafeBytes { if $0.count > 0 { out.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            }
        }
    }

    /// Stores `bytes` under an ASCII-named key.
    func put(_ table: Table, name: String, bytes: [UInt8]) throws {
        try put(table, key: Array(name.utf8), bytes: bytes)
    }

    /// Deletes the raw `key`; returns false when it was absent.
    @discardableResult
    func delete(_ table: Table, rawKey: UnsafeRawBufferPointer) throws -> Bool {
        var mdbKey = MDB_val(mv_size: rawKey.count, mv_data: UnsafeMutableRawPointer(mutating: rawKey.baseAddress))
        let rc = mdb_del(handle, writableDBI(table), &mdbKey, nil)
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del(\(table.rawValue))")
        return true
    }

    /// Deletes the u64 key `key`; returns false when it was absent.
    @discardableResult
    func delete(_ table: Table, key: UInt64) throws -> Bool {
        var keyBytes = key.bigEndian
        return try withUnsafeBytes(of: &keyBytes) { try delete(table, rawKey: $0) }
    }

    /// Deletes a byte-string key; returns false when it was absent.
    @discardableResult
    func delete(_ table: Table, key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try delete(table, rawKey: $0) }
    }

    /// Deletes every entry of `table` (`mdb_drop` without closing it); nothing when the store
    /// lacks the table.
    func clear(_ table: Table) throws {
        guard let dbi = env.dbi(table) else { return }
        try check(mdb_drop(handle, dbi, 0), "mdb_drop(\(table.rawValue))")
    }

    /// Removes and returns the smallest key of `table` (u64 keys), or nil when it is empty.
    func popFirstKey(_ table: Table) throws -> UInt64? {
        var first: UInt64? = nil
        try forEach(table) { key, _ in
            first = key
            return false
        }
        if let first { try delete(table, key: first) }
        return first
    }
}

/// Big-endian key building: byte-wise order equals numeric order, field by field.
enum BigEndianKey {
    static func u64(_ value: UInt64) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    static func append(_ value: UInt32, to key: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { key.append(contentsOf: $0) }
    }

    static func append(_ value: UInt64, to key: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { key.append(contentsOf: $0) }
    }

    static func u32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
        UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    static func u64(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}
