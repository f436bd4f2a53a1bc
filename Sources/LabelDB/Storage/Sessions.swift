import CLMDB
import Foundation

/// Why a session refused a call.
public enum SessionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The session was committed, aborted or ended; it cannot be used again.
    case ended
    /// The session was used from a thread other than the one that began it (LMDB ties a write
    /// transaction to its thread; read sessions follow the same rule so misuse shows early).
    case wrongThread
    /// A write session is already open on this thread (a second would deadlock on LMDB's lock).
    case writeInProgress
    /// An earlier call in this write session failed; the session can only be aborted.
    case failed(String)
    /// The map is full and could not grow while other transactions of this process stay open.
    case mapFullWithOpenTransactions
    /// The store was closed.
    case storeClosed

    public var description: String {
        switch self {
        case .ended: "the transaction has ended (committed or aborted); begin a new one"
        case .wrongThread: "the transaction was used from a thread other than the one that began it"
        case .writeInProgress: "a write transaction is already open on this thread; commit or abort it first"
        case .failed(let reason): "an earlier call in this write transaction failed (\(reason)); abort it"
        case .mapFullWithOpenTransactions: "the store's map is full and cannot grow while other transactions of this process are open; end them and retry"
        case .storeClosed: "the store is closed"
        }
    }
}

/// Begins an LMDB transaction that outlives this call: takes the resize permit and keeps it (the
/// session gives it back when it ends), adopting another process's map size first if needed.
private func beginHoldingPermit(_ env: Environment, flags: UInt32) throws -> OpaquePointer {
    while true {
        env.acquirePermit()
        var txn: OpaquePointer?
        let rc = mdb_txn_begin(env.handle, nil, flags, &txn)
        if rc == MDB_MAP_RESIZED {
            env.releasePermit()
            try env.adoptMapSize()
            continue
        }
        do { try check(rc, "mdb_txn_begin") } catch { env.releasePermit(); throw error }
        return txn!
    }
}

/// A read transaction that stays open across calls, for shells whose callers cannot pass a
/// closure (the C API). Prefer ``Store/read(clearance:_:)`` in Swift.
///
/// A session belongs to the thread that began it. While it is open the map cannot grow, so a
/// writer that fills the map waits for it to end: keep sessions short.
public final class ReadSession {
    /// The store read.
    public let store: Store
    private var tx: Transaction?
    private let thread = pthread_self()

    /// Begins a read transaction under `clearance`.
    ///
    /// - Throws: ``SessionError/storeClosed``, or ``LMDBError``.
    public init(store: Store, clearance: Clearance) throws {
        guard store.isOpen else { throw SessionError.storeClosed }
        self.store = store
        let txn = try beginHoldingPermit(store.env, flags: UInt32(MDB_RDONLY))
        tx = Transaction(store: store, env: store.env, txn: txn, clearance: clearance)
    }

    deinit { end() }

    /// True until ``end()``.
    public var isOpen: Bool { tx != nil }

    /// Runs `body` in the session's snapshot.
    ///
    /// - Throws: ``SessionError/ended``, ``SessionError/wrongThread``, or whatever `body` throws.
    public func run<T>(_ body: (Transaction) throws -> T) throws -> T {
        guard let tx else { throw SessionError.ended }
        guard pthread_equal(thread, pthread_self()) != 0 else { throw SessionError.wrongThread }
        return try body(tx)
    }

    /// Ends the transaction. Idempotent; a session not ended ends when released.
    public func end() {
        guard let tx, let txn = tx.txn else { return }
        tx.txn = nil
        self.tx = nil
        mdb_txn_abort(txn)
        store.env.releasePermit()
    }
}

/// The write transaction held open across calls, for shells whose callers cannot pass a closure
/// (the C API). Prefer ``Store/write(clearance:_:)`` in Swift.
///
/// Each ``run(_:)`` runs at once, so its errors are the caller's at once. A call that fails
/// leaves the session *failed*: its earlier changes may be half done, so the only way out is
/// ``abort()``. When the map fills, the session aborts LMDB's transaction, grows the map and
/// replays every call that succeeded so far (their closures must capture their inputs, and be
/// safe to repeat), then the one that filled it.
public final class WriteSession {
    /// The store written.
    public let store: Store
    private let clearance: Clearance
    private var tx: WriteTransaction?
    private var journal: [(WriteTransaction) throws -> Void] = []
    private var failure: String?
    private let thread = pthread_self()

    /// Begins the write transaction under `clearance`. Waits while another thread or process writes.
    ///
    /// - Throws: ``StoreError/readOnly(path:)``, ``SessionError/writeInProgress``, ``SessionError/storeClosed``, ``LMDBError``.
    public init(store: Store, clearance: Clearance) throws {
        guard store.isOpen else { throw SessionError.storeClosed }
        guard !store.isReadOnly else { throw StoreError.readOnly(path: store.path) }
        guard !store.env.isWriterThread else { throw SessionError.writeInProgress }
        self.store = store
        self.clearance = clearance
        try begin()
    }

    deinit { abort() }

    /// True until ``commit()`` or ``abort()``.
    public var isOpen: Bool { tx != nil }

    private func begin() throws {
        let txn = try beginHoldingPermit(store.env, flags: 0)
        store.env.setWriter(true)
        tx = WriteTransaction(store: store, env: store.env, txn: txn, clearance: clearance)
    }

    /// Aborts LMDB's transaction and lets go of the permit and the writer mark.
    private func release(abortingLMDB: Bool) {
        guard let tx else { return }
        if abortingLMDB, let txn = tx.txn { mdb_txn_abort(txn) }
        tx.txn = nil
        self.tx = nil
        store.env.setWriter(false)
        store.env.releasePermit()
    }

    /// Grows the map after it filled, begins again and replays the journal (`ended`: LMDB's
    /// transaction was already ended by a failed commit).
    private func growAndReplay(ended: Bool = false) throws {
        release(abortingLMDB: !ended)
        guard try store.env.growMap(waitingAtMost: 30) else {
            failure = SessionError.mapFullWithOpenTransactions.description
            throw SessionError.mapFullWithOpenTransactions
        }
        try begin()
        for step in journal {
            try step(tx!)
            if tx!.sawMapFull { return try growAndReplay() }
        }
    }

    private func checkUsable() throws -> WriteTransaction {
        guard let tx else { throw SessionError.ended }
        guard pthread_equal(thread, pthread_self()) != 0 else { throw SessionError.wrongThread }
        if let failure { throw SessionError.failed(failure) }
        return tx
    }

    /// Runs `step` in the write transaction now; it is kept to replay if the map must grow.
    ///
    /// - Throws: ``SessionError`` when the session cannot be used, or whatever `step` throws (the
    ///   session is then failed).
    public func run<T>(_ step: @escaping (WriteTransaction) throws -> T) throws -> T {
        var current = try checkUsable()
        while true {
            do {
                let value = try step(current)
                if current.sawMapFull { throw LMDBError(code: MDB_MAP_FULL, call: "mdb_put") }
                journal.append { _ = try step($0) }
                return value
            } catch {
                if current.sawMapFull {
                    do { try growAndReplay() } catch { failure = "\(error)"; throw error }
                    current = tx!
                    continue
                }
                failure = "\(error)"
                throw error
            }
        }
    }

    /// Runs `body`, which only reads, in the write transaction (it sees the session's changes). It
    /// is not kept for replay, and its failure does not fail the session.
    public func runReading<T>(_ body: (Transaction) throws -> T) throws -> T {
        try body(try checkUsable())
    }

    /// Commits every change of the session. The session ends whether or not this succeeds.
    ///
    /// - Throws: ``SessionError`` when the session cannot be used (it is then aborted), or ``LMDBError``.
    public func commit() throws {
        do {
            while true {
                let current = try checkUsable()
                let txn = current.txn!
                // commitWrite ends LMDB's transaction whatever happens.
                let committed: Bool
                do { committed = try store.commitWrite(current, txn) } catch {
                    current.txn = nil
                    release(abortingLMDB: false)
                    throw error
                }
                current.txn = nil
                if committed { release(abortingLMDB: false); return }
                try growAndReplay(ended: true)
            }
        } catch {
            abort()
            throw error
        }
    }

    /// True when called on the thread that began the session (the only one that may end it).
    public var isOnOwnThread: Bool { pthread_equal(thread, pthread_self()) != 0 }

    /// Marks the session failed without running anything: a shell's own check of a call's
    /// arguments failed, and the caller must not be able to commit as if the call had run.
    public func fail(_ reason: String) {
        if tx != nil, failure == nil { failure = reason }
    }

    /// Discards every change of the session. Idempotent.
    public func abort() {
        release(abortingLMDB: true)
        journal.removeAll()
    }
}
