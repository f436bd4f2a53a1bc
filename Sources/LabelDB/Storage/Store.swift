import CLMDB
import Foundation

/// A LabelDB store: one directory holding one LMDB environment.
///
/// For example:
///
/// ```swift
/// let store = try Store.create(at: "/tmp/corpus", schema: Schema(dimension: 4, classes: ["cat", "dog"]))
/// try store.write(clearance: .all) { tx in
///     try tx.put(Sample(id: 1, embedding: [0.1, 0.2, 0.3, 0.4], metadata: ["split": "train"]))
/// }
/// let sample = try store.read(clearance: .all) { tx in try tx.sample(1) }
/// store.close()
/// ```
///
/// Threading: a `Store` may be shared by many threads. Reads run concurrently, each on its own
/// snapshot; one write runs at a time (across processes too). Many processes may open the same
/// store; within one process, opening the same directory twice shares one LMDB environment.
public final class Store: @unchecked Sendable {
    /// How a store is opened.
    public struct Options: Sendable {
        /// Open without write access (`MDB_RDONLY`); every write throws ``StoreError/readOnly(path:)``.
        public var readOnly = false
        /// The initial LMDB map size in bytes. The map grows on its own when full; a small value is
        /// useful only to test that growth.
        public var initialMapSize = Environment.defaultMapSize
        /// The most concurrent read transactions across all processes (`mdb_env_set_maxreaders`).
        public var maxReaders: UInt32 = 1024

        /// The defaults: read-write, 1 TiB of address space, 1024 readers.
        public init(readOnly: Bool = false) { self.readOnly = readOnly }
    }

    /// The store directory as given.
    public let path: String
    /// Each label set's latest version committed to the sharded corpus this store is a shard of,
    /// as its manifest records them (nil for a store read on its own). Set by ``Corpus`` before
    /// any read: label sets the manifest does not name read as absent, and versions past it as
    /// not yet imported, so a reader of the corpus sees one committed state across its shards.
    public internal(set) var committedLabelVersions: [String: Int]?
    /// Each projector's latest version committed to the sharded corpus this store is a shard
    /// of (nil for a store read on its own): as ``committedLabelVersions``, for projectors.
    public internal(set) var committedProjectorVersions: [String: Int]?
    /// True when writes are refused: opened read-only, or written by a newer format.
    public let isReadOnly: Bool
    /// The store's schema.
    public let schema: Schema
    /// The format version the store was written with (its write version).
    public let formatVersion: Int

    let env: Environment
    let blockLayout: EmbeddingBlockLayout
    private let closeLock = NSLock()
    private var isClosed = false

    /// The format version this code writes.
    public static let currentFormatVersion = Int(SchemaRecord.currentWriteVersion)

    // MARK: Opening and closing

    /// Creates a new store in `path`, which must not exist or be an empty directory.
    ///
    /// - Throws: ``StoreError/alreadyExists(path:)`` when the directory is not empty;
    ///   ``StoreError/io(path:reason:)`` when it cannot be created. Nothing is left behind on failure.
    public static func create(at path: String, schema: Schema, options: Options = Options()) throws -> Store {
        let fm = FileManager.default
        let createdDirectory = try prepareEmptyDirectory(path)
        do {
            let resolved = Store.resolve(path)
            let env = try EnvironmentRegistry.acquire(path: resolved, readOnly: false, mapSize: options.initialMapSize, maxReaders: options.maxReaders)
            do {
                _ = try env.openTables(create: true)
                let record = SchemaRecord(
                    writeVersion: SchemaRecord.currentWriteVersion, readVersion: SchemaRecord.currentReadVersion, schema: schema)
                let store = Store(path: path, env: env, readOnly: false, schema: schema, formatVersion: Int(record.writeVersion))
                try store.write(clearance: .all) { tx in
                    try tx.put(.meta, name: MetaKey.schema, bytes: record.encoded())
                    try tx.put(.meta, name: MetaKey.slots, bytes: CounterRecord.encoded(0))
                    try tx.put(.meta, name: MetaKey.taintedSamples, bytes: CounterRecord.encoded(0))
                }
                return store
            } catch {
                EnvironmentRegistry.release(env)
                throw error
            }
        } catch {
            // A failed create leaves nothing behind.
            if createdDirectory {
                try? fm.removeItem(atPath: path)
            } else {
                for name in ["data.mdb", "lock.mdb"] { try? fm.removeItem(atPath: path + "/" + name) }
            }
            throw error
        }
    }

    /// Opens an existing store.
    ///
    /// A store written by a newer LabelDB opens read-only when its read version is one this code
    /// understands, and fails otherwise (format-spec/storage.md, R-4 and R-5). An older store is
    /// migrated in one write transaction.
    ///
    /// - Throws: ``StoreError/notAStore(path:reason:)``, ``StoreError/incompatibleFormat(path:readVersion:writeVersion:supported:)``,
    ///   ``LMDBError`` for failures of LMDB itself.
    public convenience init(opening path: String, options: Options = Options()) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw StoreError.notAStore(path: path, reason: "no such directory")
        }
        // Without this check LMDB would create an empty data file in any directory it is given.
        guard fm.fileExists(atPath: path + "/data.mdb") else {
            throw StoreError.notAStore(path: path, reason: "no data.mdb in the directory")
        }
        let env: Environment
        do {
            env = try EnvironmentRegistry.acquire(path: Store.resolve(path), readOnly: options.readOnly, mapSize: options.initialMapSize, maxReaders: options.maxReaders)
        } catch LMDBError.invalid {
            throw StoreError.notAStore(path: path, reason: "data.mdb is not an LMDB file")
        } catch LMDBError.versionMismatch {
            throw StoreError.notAStore(path: path, reason: "data.mdb was written by an incompatible LMDB version")
        }
        do {
            let missing = try env.openTables(create: false)
            if let absent = missing.first(where: { $0.introducedIn == 1 }) {
                throw StoreError.notAStore(path: path, reason: "the LMDB environment lacks LabelDB's `\(absent.rawValue)` table")
            }
            let record = try Store.readSchema(env: env, path: path)
            // A newer format may lack tables this code knows: say so before judging its tables.
            let supported = Int(SchemaRecord.currentWriteVersion)
            if Int(record.readVersion) > supported {
                throw StoreError.incompatibleFormat(path: path, readVersion: Int(record.readVersion), writeVersion: Int(record.writeVersion), supported: supported)
            }
            // A table its format has must be there: a damaged name in LMDB's main database would
            // otherwise read as an empty table — no taint labels, so every sample public.
            if let absent = missing.first(where: { $0.isRequired(inFormat: Int(record.writeVersion)) }) {
                throw StoreError.corruptRecord(store: path, table: absent.rawValue, key: "*",
                                               detail: "the table is missing from a format-\(record.writeVersion) store; restore a backup")
            }
            let newerWriter = Int(record.writeVersion) > supported
            let migrates = !(options.readOnly || newerWriter) && Int(record.writeVersion) < supported
            // A store that is migrated here is of the current format from now on.
            self.init(path: path, env: env, readOnly: options.readOnly || newerWriter, schema: record.schema,
                      formatVersion: migrates ? supported : Int(record.writeVersion))
            if migrates { try migrate(from: record) }
            if !isReadOnly { try finishMigration(from: Int(record.writeVersion)) }
        } catch {
            EnvironmentRegistry.release(env)
            throw error
        }
    }

    private init(path: String, env: Environment, readOnly: Bool, schema: Schema, formatVersion: Int) {
        self.path = path
        self.env = env
        self.isReadOnly = readOnly || env.isReadOnly
        self.schema = schema
        self.formatVersion = formatVersion
        self.blockLayout = EmbeddingBlockLayout(schema: schema)
    }

    deinit { close() }

    /// Closes the store. Idempotent. Every transaction must have ended (they cannot outlive their
    /// closures, so this holds unless a closure is still running on another thread).
    public func close() {
        closeLock.withLock {
            if isClosed { return }
            isClosed = true
            EnvironmentRegistry.release(env)
        }
    }

    /// Makes sure `path` is an empty directory, creating it when missing; returns whether it was
    /// created (so a failure can remove it again).
    static func prepareEmptyDirectory(_ path: String) throws -> Bool {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue, (try? fm.contentsOfDirectory(atPath: path).isEmpty) == true else {
                throw StoreError.alreadyExists(path: path)
            }
            return false
        }
        do {
            try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
            return true
        } catch {
            throw StoreError.io(path: path, reason: "cannot create the directory (\(error.localizedDescription))")
        }
    }

    static func resolve(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }

    private static func readSchema(env: Environment, path: String) throws -> SchemaRecord {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env.handle, nil, UInt32(MDB_RDONLY), &txn), "mdb_txn_begin")
        defer { mdb_txn_abort(txn) }
        var key = MDB_val()
        var value = MDB_val()
        var name = MetaKey.schema
        let rc = name.withUTF8 { k in
            key = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            // safe: the caller checked that the version-1 tables, `meta` among them, exist.
            return mdb_get(txn, env.dbi(.meta)!, &key, &value)
        }
        if rc == MDB_NOTFOUND { throw StoreError.notAStore(path: path, reason: "no schema record") }
        try check(rc, "mdb_get(meta)")
        do {
            return try SchemaRecord.decode(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
        } catch let error as RecordDecodingError {
            throw StoreError.corruptRecord(store: path, table: Table.meta.rawValue, key: MetaKey.schema, detail: error.detail)
        } catch let mismatch as ChecksumMismatch {
            throw StoreError.checksumMismatch(store: path, table: Table.meta.rawValue, key: MetaKey.schema, expected: mismatch.expected, found: mismatch.found)
        }
    }

    /// Brings an older store up to the current format in one write transaction: format 2 added the
    /// label tables, format 3 the head, projector and provenance tables, format 4 the taint tables
    /// (all created empty; existing records stay as they are and are read by their record
    /// versions), format 5 the partition count (the entries `taint_members` holds), format 6 the
    /// label blocks and class postings (marked to be built from the rows by
    /// ``finishMigration(from:)``); and the schema record gets the new versions.
    private func migrate(from record: SchemaRecord) throws {
        var upgraded = record
        upgraded.writeVersion = SchemaRecord.currentWriteVersion
        upgraded.readVersion = SchemaRecord.currentReadVersion
        // One write transaction: create whatever tables this store lacks, and record the new
        // versions. (A map too small for this is not possible: a migration adds a few pages.)
        _ = try env.openTables(create: true) { txn, dbis in
            // safe: `meta` is a version-1 table, checked to exist before migrating.
            let meta = dbis[Table.meta.index]!
            if record.writeVersion < 5 {
                // The partitions as they stand are sealed and become the recorded count: a
                // format-4 store has no other record to check them against.
                let members = dbis[Table.taintMembers.index]!
                let keys = try Store.rawKeys(txn, members)
                for key in keys { try Store.rawPut(txn, members, key: key, value: PartitionEntry.value(key: key)) }
                // Tag entries are sealed too: a damaged name would move data into another tag.
                let tags = dbis[Table.taintTags.index]!
                for (key, value) in try Store.rawEntries(txn, tags) {
                    try Store.rawPut(txn, tags, key: key, value: SealedRecord.seal(value, seed: SealedRecord.seed(key: key)))
                }
                try Store.rawPut(txn, meta, key: Array(MetaKey.taintedSamples.utf8), value: CounterRecord.encoded(UInt64(keys.count)))
                try Store.rawPut(txn, meta, key: Array(MetaKey.recountLabelled.utf8), value: CounterRecord.encoded(1))
            }
            if record.writeVersion < 6 {
                try Store.rawPut(txn, meta, key: Array(MetaKey.packLabels.utf8), value: CounterRecord.encoded(1))
            }
            if record.writeVersion < 7 {
                try Store.rawPut(txn, meta, key: Array(MetaKey.recordFitted.utf8), value: CounterRecord.encoded(1))
            }
            try Store.rawPut(txn, meta, key: Array(MetaKey.schema.utf8), value: upgraded.encoded())
        }
    }

    /// The migration steps that read records through a transaction, each in a write transaction
    /// of its own after the migration's, and again on the next writable open if one was
    /// interrupted (its marker stays until it commits): earlier formats did not lower `labelled`
    /// on delete, and format 5 checks reads against it; format 6 packs the label rows in blocks
    /// and answers top-1 filters from class postings built from them (until then, reads use the
    /// rows as they are).
    private func finishMigration(from format: Int) throws {
        let steps: [(marker: String, name: String, run: (WriteTransaction) throws -> Void)] = [
            (MetaKey.recountLabelled, "recount labelled", { try $0.recountLabelled() }),
            (MetaKey.packLabels, "pack label rows", { try $0.packLabelRows() }),
            (MetaKey.recordFitted, "record fitted samples", { try $0.recordFittedSamples() }),
        ]
        for step in steps where try read(clearance: .all, { tx in try tx.withValue(.meta, name: step.marker) { $0 != nil } }) {
            try write(clearance: .all) { tx in
                try step.run(tx)
                try tx.delete(.meta, key: Array(step.marker.utf8))
                tx.describe(ProvenanceRecord(activity: "migrate", agent: "labeldb",
                                             parameters: ["from_format": "\(format)", "to_format": "\(Store.currentFormatVersion)", "step": step.name]))
            }
        }
    }

    /// `mdb_put`, for migrations (which run before any `Transaction` exists).
    private static func rawPut(_ txn: OpaquePointer, _ dbi: MDB_dbi, key: [UInt8], value: [UInt8]) throws {
        var key = key, bytes = value
        try key.withUnsafeMutableBytes { k in
            try bytes.withUnsafeMutableBytes { v in
                var mdbKey = MDB_val(mv_size: k.count, mv_data: k.baseAddress)
                var mdbValue = MDB_val(mv_size: v.count, mv_data: v.baseAddress)
                try LabelDB.check(mdb_put(txn, dbi, &mdbKey, &mdbValue, 0), "mdb_put")
            }
        }
    }

    /// Every key of a table, copied, for migrations.
    private static func rawKeys(_ txn: OpaquePointer, _ dbi: MDB_dbi) throws -> [[UInt8]] {
        try rawEntries(txn, dbi).map(\.key)
    }

    /// Every entry of a table, copied, for migrations.
    private static func rawEntries(_ txn: OpaquePointer, _ dbi: MDB_dbi) throws -> [(key: [UInt8], value: [UInt8])] {
        var cursor: OpaquePointer?
        try LabelDB.check(mdb_cursor_open(txn, dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var entries: [(key: [UInt8], value: [UInt8])] = []
        var key = MDB_val(), value = MDB_val()
        var rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
        while rc == 0 {
            entries.append((Array(UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size)),
                            Array(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))))
            rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try LabelDB.check(rc, "mdb_cursor_get") }
        return entries
    }

    // MARK: Transactions

    /// Runs `body` in a read transaction: a consistent snapshot that no concurrent write changes.
    ///
    /// For example:
    ///
    /// ```swift
    /// let count = try store.read(clearance: .public) { tx in try tx.count() }
    /// ```
    ///
    /// Every read inside `body` sees only what `clearance` admits: samples, labels and projectors
    /// whose taint label does not flow to it are not returned and not counted.
    ///
    /// The transaction and every buffer it lends are valid only inside `body`; do not let them escape.
    /// Keep `body` short: an open read transaction keeps old pages from being reused.
    ///
    /// - Throws: whatever `body` throws, or ``LMDBError``.
    public func read<T>(clearance: Clearance, _ body: (Transaction) throws -> T) throws -> T {
        precondition(!closeLock.withLock { isClosed }, "LabelDB: read on a closed store")
        while true {
            var outcome: T?
            var adopt = false
            try env.withTransactionPermit {
                var txn: OpaquePointer?
                let rc = mdb_txn_begin(env.handle, nil, UInt32(MDB_RDONLY), &txn)
                if rc == MDB_MAP_RESIZED { adopt = true; return }
                try LabelDB.check(rc, "mdb_txn_begin")
                let tx = Transaction(store: self, env: env, txn: txn!, clearance: clearance)
                defer {
                    tx.txn = nil
                    mdb_txn_abort(txn)
                }
                outcome = try body(tx)
            }
            if adopt {
                // Another process grew the map: adopt its size (needs no open transaction here).
                try env.adoptMapSize()
                continue
            }
            return outcome!
        }
    }

    /// Runs `body` in the write transaction, and commits when it returns; nothing is written if it throws.
    ///
    /// For example:
    ///
    /// ```swift
    /// try store.write(clearance: .all) { tx in try tx.delete(42) }
    /// ```
    ///
    /// `clearance` limits what the transaction sees, and so what it can change: a sample it
    /// cannot see is absent to it (deletes skip it, labels cannot be written for it).
    ///
    /// `body` may run more than once: when the map is full, LMDB's transaction is aborted, the map
    /// grown, and `body` replayed from the start. So `body` must be safe to repeat (no side effects
    /// outside the store). Only one write runs at a time; a nested `write` on the same thread traps.
    ///
    /// - Throws: ``StoreError/readOnly(path:)`` on a read-only store, whatever `body` throws, or ``LMDBError``.
    @discardableResult
    public func write<T>(clearance: Clearance, _ body: (WriteTransaction) throws -> T) throws -> T {
        precondition(!closeLock.withLock { isClosed }, "LabelDB: write on a closed store")
        guard !isReadOnly else { throw StoreError.readOnly(path: path) }
        env.enterWriter()
        while true {
            var outcome: T?
            var retry = WriteRetry.none
            try env.withTransactionPermit {
                var txn: OpaquePointer?
                let rc = mdb_txn_begin(env.handle, nil, 0, &txn)
                if rc == MDB_MAP_RESIZED { retry = .adopt; return }
                try LabelDB.check(rc, "mdb_txn_begin")
                env.setWriter(true)
                defer { env.setWriter(false) }
                let tx = WriteTransaction(store: self, env: env, txn: txn!, clearance: clearance)
                defer { tx.txn = nil }
                let value: T
                do {
                    value = try body(tx)
                } catch {
                    mdb_txn_abort(txn)
                    if tx.sawMapFull { retry = .grow; return }
                    throw error
                }
                guard try commitWrite(tx, txn!) else { retry = .grow; return }
                outcome = value
            }
            switch retry {
            case .none: return outcome!
            case .grow: try env.growMap()
            case .adopt: try env.adoptMapSize()
            }
        }
    }

    /// Finishes a write transaction: records the partition count and the provenance record,
    /// then commits. Returns false when the map filled (the transaction is then aborted: grow the
    /// map and replay); LMDB's transaction is ended either way.
    func commitWrite(_ tx: WriteTransaction, _ txn: OpaquePointer) throws -> Bool {
        if !tx.sawMapFull {
            // Every write leaves a provenance record (the one the closure described, or a
            // generic one naming what changed).
            do {
                try tx.recordPartitionCount()
                try tx.appendProvenance()
            } catch {
                mdb_txn_abort(txn)
                if tx.sawMapFull { return false }
                throw error
            }
        }
        if tx.sawMapFull {
            // The closure swallowed MDB_MAP_FULL; the transaction is unusable either way.
            mdb_txn_abort(txn)
            return false
        }
        // mdb_txn_commit frees the transaction whether or not it succeeds.
        let commit = mdb_txn_commit(txn)
        if commit == MDB_MAP_FULL { return false }
        try LabelDB.check(commit, "mdb_txn_commit")
        return true
    }

    /// True while this thread holds the store's write transaction (a ``WriteSession`` or a
    /// ``write(clearance:_:)`` closure): a second write from it would deadlock.
    public var isWritingOnThisThread: Bool { env.isWriterThread }

    /// False once ``close()`` has run.
    public var isOpen: Bool { !closeLock.withLock { isClosed } }

    // MARK: Files

    /// The current LMDB map size in bytes (address space reserved, not disk used).
    public var mapSize: Int { env.mapSize }

    /// The bytes the store's files occupy on disk, as `du` counts them (allocated blocks).
    public var bytesOnDisk: Int {
        ["data.mdb", "lock.mdb"].reduce(0) { total, name in
            var info = stat()
            return stat(path + "/" + name, &info) == 0 ? total + Int(info.st_blocks) * 512 : total
        }
    }

    /// Writes a consistent, compacted copy of the store into `destination` (a new or empty directory),
    /// while readers and a writer keep running. The copy contains no free pages, so bytes of deleted
    /// records do not reach it (LMDB keeps them in free pages of the original until they are reused).
    /// The corresponding LMDB call is `mdb_env_copy2` with `MDB_CP_COMPACT`.
    ///
    /// A copy holds every record, so only a clearance that sees the whole store may take one.
    ///
    /// - Throws: ``TaintError/clearanceTooNarrow(_:)`` when `clearance` does not admit every
    ///   label in the store; ``StoreError/alreadyExists(path:)`` when `destination` is not empty; ``LMDBError``.
    public func backup(to destination: String, clearance: Clearance) throws {
        guard try read(clearance: clearance, { try $0.seesEverything }) else {
            throw TaintError.clearanceTooNarrow("a backup copies every record; it needs a clearance that sees the whole store (the clearance 'all')")
        }
        let fm = FileManager.default
        let created = try Store.prepareEmptyDirectory(destination)
        do {
            try env.withTransactionPermit {
                try LabelDB.check(mdb_env_copy2(env.handle, destination, UInt32(MDB_CP_COMPACT)), "mdb_env_copy2(\(destination))")
            }
        } catch {
            if created { try? fm.removeItem(atPath: destination) } else { try? fm.removeItem(atPath: destination + "/data.mdb") }
            throw error
        }
    }
}

/// Why a write transaction must start again.
private enum WriteRetry { case none, grow, adopt }

/// Keys of the `meta` table.
enum MetaKey {
    static let schema = "schema"
    static let slots = "slots"
    /// The store's write sequence (same layout as `slots`), format 3.
    static let sequence = "sequence"
    /// The number of entries in `taint_partitions` (same layout as `slots`), format 5.
    static let taintedSamples = "tainted"
    /// Present while label-set versions' `labelled` counts await their recount (migrating to
    /// format 5 sets it in the migration's transaction; the recount's removes it).
    static let recountLabelled = "recount_labelled"
    /// Present while a store migrated to format 6 has not packed its label rows (and built its
    /// class postings) yet.
    static let packLabels = "pack_labels"
    /// Present while a migration to format 7 has not yet recorded the samples each projector
    /// version was fitted on.
    static let recordFitted = "record_fitted"
}
