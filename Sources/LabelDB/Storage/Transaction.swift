import CLMDB

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
    /// Set when an LMDB call returned `MDB_MAP_FULL`: the write must be replayed after growing.
    var sawMapFull = false

    init(store: Store, env: Environment, txn: OpaquePointer) {
        self.store = store
        self.env = env
        self.txn = txn
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

    /// Looks up `key` in `table` and passes the value (borrowed from the map) to `body`,
    /// or nil when the key is absent.
    @inline(__always)
    func withValue<T>(
        _ table: Table, key: UInt64, _ body: (UnsafeRawBufferPointer?) throws -> T
    ) throws -> T {
        var keyBytes = key.bigEndian
        return try withUnsafeMutableBytes(of: &keyBytes) { k in
            var mdbKey = MDB_val(mv_size: 8, mv_data: k.baseAddress)
            var value = MDB_val()
            let rc = mdb_get(handle, env.dbi(table), &mdbKey, &value)
            if rc == MDB_NOTFOUND { return try body(nil) }
            try check(rc, "mdb_get(\(table.rawValue))")
            return try body(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
        }
    }

    /// Looks up an ASCII-named key in `table`.
    func withValue<T>(
        _ table: Table, name: String, _ body: (UnsafeRawBufferPointer?) throws -> T
    ) throws -> T {
        var name = name
        return try name.withUTF8 { k in
            var mdbKey = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            var value = MDB_val()
            let rc = mdb_get(handle, env.dbi(table), &mdbKey, &value)
            if rc == MDB_NOTFOUND { return try body(nil) }
            try check(rc, "mdb_get(\(table.rawValue))")
            return try body(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
        }
    }

    /// The number of entries in `table` (`mdb_stat`'s `ms_entries`), without a scan.
    func entries(_ table: Table) throws -> Int {
        var stat = MDB_stat()
        try check(mdb_stat(handle, env.dbi(table), &stat), "mdb_stat(\(table.rawValue))")
        return stat.ms_entries
    }

    /// Walks `table` in key order from the first key ≥ `start` (u64 big-endian keys), passing each
    /// key and borrowed value to `body` until it returns false.
    func forEach(
        _ table: Table, from start: UInt64 = 0,
        _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, env.dbi(table), &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var startKey = start.bigEndian
        try withUnsafeMutableBytes(of: &startKey) { k in
            var key = MDB_val(mv_size: 8, mv_data: k.baseAddress)
            var value = MDB_val()
            var rc = mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
            while rc == 0 {
                // Untrusted: a key of the wrong size means the table is damaged, not a trap.
                guard key.mv_size == 8 else {
                    throw StoreError.corruptRecord(
                        store: store.path, table: table.rawValue, key: "?", detail: "key of \(key.mv_size) bytes, expected 8")
                }
                let id = UInt64(bigEndian: key.mv_data.loadUnaligned(as: UInt64.self))
                let bytes = UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)
                if try !body(id, bytes) { return }
                rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
            }
            if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get(\(table.rawValue))") }
        }
    }

    /// The largest u64 key in `table`, or nil when it is empty.
    func lastKey(_ table: Table) throws -> UInt64? {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, env.dbi(table), &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val()
        var value = MDB_val()
        let rc = mdb_cursor_get(cursor, &key, &value, MDB_LAST)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_cursor_get(\(table.rawValue))")
        guard key.mv_size == 8 else {
            throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "?", detail: "key of \(key.mv_size) bytes, expected 8")
        }
        return UInt64(bigEndian: key.mv_data.loadUnaligned(as: UInt64.self))
    }
}

/// A write transaction: everything a ``Transaction`` reads, plus changes that become visible to
/// other readers only when ``Store/write(_:)`` commits.
///
/// The closure that receives it may run more than once (when the map must grow, LMDB's
/// transaction is aborted and the closure replayed), so it must not have side effects outside
/// the store that cannot be repeated.
public final class WriteTransaction: Transaction {
    /// Stores `value` under the u64 key `key`, reserving `size` bytes and letting `fill` write
    /// them in place (`MDB_RESERVE`), so large values are not copied twice.
    ///
    /// `append` uses `MDB_APPEND`: the caller promises `key` is greater than every key in the
    /// table, which lets LMDB fill pages completely instead of splitting them in half.
    func put(
        _ table: Table, key: UInt64, size: Int, append: Bool = false,
        _ fill: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws {
        var keyBytes = key.bigEndian
        try withUnsafeMutableBytes(of: &keyBytes) { k in
            var mdbKey = MDB_val(mv_size: 8, mv_data: k.baseAddress)
            var value = MDB_val(mv_size: size, mv_data: nil)
            var flags = UInt32(MDB_RESERVE)
            if append { flags |= UInt32(MDB_APPEND) }
            try check(mdb_put(handle, env.dbi(table), &mdbKey, &value, flags), "mdb_put(\(table.rawValue))")
            try fill(UnsafeMutableRawBufferPointer(start: value.mv_data, count: size))
        }
    }

    /// Stores `bytes` under an ASCII-named key.
    func put(_ table: Table, name: String, bytes: [UInt8]) throws {
        var name = name
        var bytes = bytes
        try name.withUTF8 { k in
            try bytes.withUnsafeMutableBytes { v in
                var mdbKey = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
                var value = MDB_val(mv_size: v.count, mv_data: v.baseAddress)
                try check(mdb_put(handle, env.dbi(table), &mdbKey, &value, 0), "mdb_put(\(table.rawValue))")
            }
        }
    }

    /// Deletes the u64 key `key`; returns false when it was absent.
    @discardableResult
    func delete(_ table: Table, key: UInt64) throws -> Bool {
        var keyBytes = key.bigEndian
        return try withUnsafeMutableBytes(of: &keyBytes) { k in
            var mdbKey = MDB_val(mv_size: 8, mv_data: k.baseAddress)
            let rc = mdb_del(handle, env.dbi(table), &mdbKey, nil)
            if rc == MDB_NOTFOUND { return false }
            try check(rc, "mdb_del(\(table.rawValue))")
            return true
        }
    }

    /// Removes and returns the smallest key of `table`, or nil when it is empty.
    func popFirstKey(_ table: Table) throws -> UInt64? {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, env.dbi(table), &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val()
        var value = MDB_val()
        let rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_cursor_get(\(table.rawValue))")
        guard key.mv_size == 8 else {
            throw StoreError.corruptRecord(store: store.path, table: table.rawValue, key: "?", detail: "key of \(key.mv_size) bytes, expected 8")
        }
        let first = UInt64(bigEndian: key.mv_data.loadUnaligned(as: UInt64.self))
        try check(mdb_cursor_del(cursor, 0), "mdb_cursor_del(\(table.rawValue))")
        return first
    }
}
