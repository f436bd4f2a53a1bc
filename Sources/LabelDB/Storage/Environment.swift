import CLMDB
import Foundation

/// One open LMDB environment, shared by every `Store` handle on the same directory in this process.
///
/// LMDB forbids opening one environment twice in a process (closing the second copy breaks the
/// first one's `fcntl` locks), so ``EnvironmentRegistry`` hands out one `Environment` per
/// directory and counts its users.
///
/// Threading: `mdb_env_set_mapsize` may run only while this process has no transaction open.
/// Every transaction therefore holds `resizeLock` shared for its whole life, and growing the map
/// takes it exclusively. Safe to share across threads: the pointer is immutable and the mutable
/// state is guarded by `resizeLock` and `stateLock`.
final class Environment: @unchecked Sendable {
    /// The `MDB_env*`; valid until `close()`.
    let handle: OpaquePointer
    /// The store directory, resolved to an absolute path.
    let path: String
    /// True when the environment was opened with `MDB_RDONLY`.
    let isReadOnly: Bool
    /// The process that opened the environment (a forked child must not use or close it).
    let pid = getpid()
    /// Database handles by `Table.index`, opened once when the environment opens (valid until
    /// close); nil for a table an older read-only store lacks.
    private(set) var tables: [MDB_dbi?] = []

    private var resizeLock = pthread_rwlock_t()
    private let stateLock = NSLock()
    private var users = 1

    /// The thread that holds the write transaction, to catch a nested `write` on the same thread
    /// (LMDB would deadlock on its own writer mutex).
    private var writerThread: pthread_t?

    /// Default map size: LMDB reserves address space, not disk, so start large (1 TiB on 64-bit).
    static let defaultMapSize = 1 << 40

    init(path: String, readOnly: Bool, mapSize: Int, maxReaders: UInt32) throws {
        try DataFileCheck.check(directory: path)
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "mdb_env_create")
        guard let env else { throw LMDBError(code: EINVAL, call: "mdb_env_create") }
        do {
            try check(mdb_env_set_maxdbs(env, 32), "mdb_env_set_maxdbs")
            try check(mdb_env_set_maxreaders(env, maxReaders), "mdb_env_set_maxreaders")
            try check(mdb_env_set_mapsize(env, mapSize), "mdb_env_set_mapsize")
            // MDB_NOTLS: read transactions are tied to the transaction object, not the thread, so
            // a thread may hold several and they may end on another thread.
            var flags = UInt32(MDB_NOTLS)
            if readOnly { flags |= UInt32(MDB_RDONLY) }
            try check(mdb_env_open(env, path, flags, 0o644), "mdb_env_open(\(path))")
            // Readers left in the lock table by killed processes would pin old pages forever.
            var dead: Int32 = 0
            _ = mdb_reader_check(env, &dead)
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.handle = env
        self.path = path
        self.isReadOnly = readOnly
        pthread_rwlock_init(&resizeLock, nil)
    }

    /// Opens every table. With `create`, missing tables are created (a new store, or a migration),
    /// and `inSameTransaction` runs before the commit, so a migration's table creation and its
    /// record changes land in one write transaction. Without `create`, missing tables stay absent;
    /// returns the set of missing ones.
    func openTables(create: Bool, inSameTransaction: ((OpaquePointer, [MDB_dbi?]) throws -> Void)? = nil) throws -> Set<Table> {
        var txn: OpaquePointer?
        let flags: UInt32 = create ? 0 : UInt32(MDB_RDONLY)
        try check(mdb_txn_begin(handle, nil, flags, &txn), "mdb_txn_begin")
        var opened: [MDB_dbi?] = []
        var missing = Set<Table>()
        for table in Table.allCases {
            var dbi: MDB_dbi = 0
            // A retired table is opened where it exists (a migration empties it), never created.
            let rc = mdb_dbi_open(txn, table.rawValue, create && table.retiredIn == nil ? UInt32(MDB_CREATE) : 0, &dbi)
            if rc == MDB_NOTFOUND {
                missing.insert(table)
                opened.append(nil)
                continue
            }
            if rc != 0 {
                mdb_txn_abort(txn)
                throw LMDBError(code: rc, call: "mdb_dbi_open(\(table.rawValue))")
            }
            opened.append(dbi)
        }
        if let inSameTransaction {
            do { try inSameTransaction(txn!, opened) } catch {
                mdb_txn_abort(txn)
                throw error
            }
        }
        // Committing (even a read-only transaction) makes the handles visible to later transactions.
        try check(mdb_txn_commit(txn), "mdb_txn_commit")
        tables = opened
        return missing
    }

    /// The table's handle, or nil when this (older, read-only) store lacks the table.
    @inline(__always)
    func dbi(_ table: Table) -> MDB_dbi? {
        // safe: openTables filled one entry per case, in `allCases` order, before the environment was handed out.
        tables[table.index]
    }

    // MARK: Users

    func retain() {
        stateLock.withLock { users += 1 }
    }

    /// Drops one user; returns true when this was the last one and the caller must close.
    func release() -> Bool {
        stateLock.withLock {
            users -= 1
            return users == 0
        }
    }

    func close() {
        mdb_env_close(handle)
        pthread_rwlock_destroy(&resizeLock)
    }

    // MARK: Map size

    /// Runs `body` while no resize can happen (shared hold of the resize lock).
    func withTransactionPermit<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        return try body()
    }

    /// Takes the shared hold of the resize lock for a transaction that outlives one call (a
    /// session); ``releasePermit()`` gives it back.
    func acquirePermit() { pthread_rwlock_rdlock(&resizeLock) }

    /// Gives back a hold taken by ``acquirePermit()``.
    func releasePermit() { pthread_rwlock_unlock(&resizeLock) }

    /// The current map size in bytes.
    var mapSize: Int {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        return info.me_mapsize
    }

    /// Grows the map to at least twice its size. Waits until no transaction of this process is open.
    func growMap() throws {
        pthread_rwlock_wrlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        let current = mapSize
        try check(mdb_env_set_mapsize(handle, current * 2), "mdb_env_set_mapsize")
    }

    /// Grows the map like ``growMap()``, but gives up after `seconds` and returns false: a
    /// session's caller may hold a read session open on this very thread, which would wait forever.
    func growMap(waitingAtMost seconds: Int) throws -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += seconds
        guard pthread_rwlock_timedwrlock(&resizeLock, &deadline) == 0 else { return false }
        defer { pthread_rwlock_unlock(&resizeLock) }
        let current = mapSize
        try check(mdb_env_set_mapsize(handle, current * 2), "mdb_env_set_mapsize")
        return true
    }

    /// Adopts the map size another process has set (after `MDB_MAP_RESIZED`).
    func adoptMapSize() throws {
        pthread_rwlock_wrlock(&resizeLock)
        defer { pthread_rwlock_unlock(&resizeLock) }
        try check(mdb_env_set_mapsize(handle, 0), "mdb_env_set_mapsize")
    }

    // MARK: Writer guard

    func enterWriter() {
        stateLock.withLock {
            if let writer = writerThread, pthread_equal(writer, pthread_self()) != 0 {
                preconditionFailure("LabelDB: Store.write called inside a write on the same thread (it would deadlock)")
            }
        }
    }

    /// True when this thread holds the write transaction (a second would deadlock on LMDB's mutex).
    var isWriterThread: Bool {
        stateLock.withLock { writerThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    func setWriter(_ active: Bool) {
        stateLock.withLock { writerThread = active ? pthread_self() : nil }
    }
}

/// Hands out one ``Environment`` per store directory in this process.
enum EnvironmentRegistry {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var open: [String: Environment] = [:]
    /// The process the table belongs to.
    nonisolated(unsafe) private static var openedBy = getpid()

    /// Returns the environment for `path`, opening it if this process has not yet.
    /// `create` runs when the environment is opened for the first time, while the registry lock is held.
    static func acquire(
        path: String, readOnly: Bool, mapSize: Int, maxReaders: UInt32
    ) throws -> Environment {
        try lock.withLock {
            // A forked child inherits the parent's table, but an LMDB environment must not cross
            // fork(): the parent's environments are forgotten (not closed, which would touch the
            // parent's locks) and this process opens its own.
            if openedBy != getpid() {
                open.removeAll()
                openedBy = getpid()
            }
            if let env = open[path] {
                if env.isReadOnly && !readOnly {
                    throw StoreError.alreadyOpenReadOnly(path: path)
                }
                env.retain()
                return env
            }
            let env = try Environment(path: path, readOnly: readOnly, mapSize: mapSize, maxReaders: maxReaders)
            open[path] = env
            return env
        }
    }

    /// Drops one user of `env`, closing it when it was the last.
    static func release(_ env: Environment) {
        lock.withLock {
            // An environment inherited across fork() is never closed in the child.
            guard env.pid == getpid() else { return }
            if env.release() {
                open[env.path] = nil
                env.close()
            }
        }
    }
}
