import Foundation

/// A store or a sharded corpus, opened for reading: a store reads as a corpus of one shard, so a
/// command written against this type serves both.
///
/// A corpus opens every shard its manifest names (each a ``Store``) and checks that each has the
/// manifest's schema. Reads that visit every sample fan out with ``merge(clearance:by:produce:consume:)``:
/// one thread and one read transaction per shard, merged in the caller's order as they arrive,
/// in memory bounded by the shard count, not the corpus size.
public final class Corpus: @unchecked Sendable {
    /// The directory given.
    public let path: String
    /// The manifest, nil for a plain store.
    public let manifest: CorpusManifest?
    /// The shards in shard order (one store for a plain store).
    public let shards: [Store]

    /// Opens `path`: a corpus when it holds `corpus.json`, else a store.
    ///
    /// - Throws: ``CorpusError/damaged(_:)`` for a manifest that does not check, or a shard whose
    ///   schema differs from it; a store's own errors for a shard that does not open.
    public init(opening path: String, options: Store.Options = Store.Options(readOnly: true)) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path + "/" + CorpusManifest.fileName) else {
            manifest = nil
            shards = [try Store(opening: path, options: options)]
            return
        }
        let manifest = try CorpusManifest.read(from: path)
        var opened: [Store] = []
        do {
            for name in manifest.shards {
                let shard = try Store(opening: path + "/" + name, options: options)
                shard.committedLabelVersions = manifest.labelSets
                shard.committedProjectorVersions = manifest.projectors
                opened.append(shard)
                let schema = shard.schema
                guard schema.dimension == manifest.dimension, schema.elementType == manifest.elementType, schema.classes == manifest.classes else {
                    throw CorpusError.damaged("\(path)/\(name): its schema differs from the manifest's")
                }
            }
        } catch {
            for shard in opened { shard.close() }
            throw error
        }
        self.manifest = manifest
        shards = opened
    }

    /// Opens shard `index` of the corpus at `path` on its own, read-only and pinned to the
    /// manifest's committed label-set versions as the whole corpus would read it: what a reader
    /// in another process (a Ray read task, a DataLoader worker) opens to read its part.
    ///
    /// - Throws: ``CorpusError`` for a manifest that does not check, an index out of range, or a
    ///   shard whose schema differs from the manifest's.
    /// - Parameters:
    ///   - pinned: the label-set versions to read (a manifest's `label_sets` read earlier, so
    ///     shards opened at different times read one committed state); nil for the manifest's now.
    ///   - pinnedProjectors: the projector versions to read, likewise (a manifest's `projectors`).
    public static func openShard(_ index: Int, of path: String, pinned: [String: Int]? = nil, pinnedProjectors: [String: Int]? = nil) throws -> Store {
        let manifest = try CorpusManifest.read(from: path)
        guard manifest.shards.indices.contains(index) else { throw CorpusError.invalid("shard \(index) of a corpus of \(manifest.shards.count)") }
        let shard = try Store(opening: path + "/" + manifest.shards[index], options: Store.Options(readOnly: true))
        let schema = shard.schema
        guard schema.dimension == manifest.dimension, schema.elementType == manifest.elementType, schema.classes == manifest.classes else {
            shard.close()
            throw CorpusError.damaged("\(path)/\(manifest.shards[index]): its schema differs from the manifest's")
        }
        shard.committedLabelVersions = pinned ?? manifest.labelSets
        shard.committedProjectorVersions = pinnedProjectors ?? manifest.projectors
        return shard
    }

    /// Closes every shard.
    public func close() {
        for shard in shards { shard.close() }
    }

    /// The schema every shard has.
    public var schema: Schema { shards[0].schema }

    /// True for a sharded corpus, false for a plain store.
    public var isSharded: Bool { manifest != nil }

    /// Throws unless `clearance` names only tags some shard's registry knows (corpus writes keep
    /// every shard's registry the same; a writer that died between shards may have left a tag in
    /// some only), as a store's commands check theirs.
    ///
    /// - Throws: ``TaintError/unknownTag(_:)``.
    public func validate(_ clearance: Clearance) throws {
        try Self.validate(clearance, against: shards)
    }

    /// The corpus's tag registry: every tag some shard has registered, sorted (K-14).
    public func registeredTags() throws -> [String] {
        try Self.registeredTags(of: shards).sorted()
    }

    /// The union of `shards`' tag registries.
    static func registeredTags(of shards: [Store]) throws -> Set<String> {
        try shards.reduce(into: Set<String>()) { known, shard in known.formUnion(try shard.read(clearance: .all) { try $0.registeredTags() }) }
    }

    /// ``validate(_:)`` against the union of `shards`' registries.
    static func validate(_ clearance: Clearance, against shards: [Store]) throws {
        var named = clearance.requiredIntegrity
        if case .tags(let s) = clearance.allowedSecrecy { named.formUnion(s) }
        guard !named.isEmpty else { return }
        let known = try registeredTags(of: shards)
        if let unknown = named.sorted().first(where: { !known.contains($0) }) { throw TaintError.unknownTag(unknown) }
    }

    /// The shard that holds `id`: the only one for a plain store, the one the routing rule names
    /// for a corpus (nil when the range rule has no range for it).
    public func shard(of id: UInt64) -> Store? {
        guard let manifest else { return shards[0] }
        return manifest.shard(of: id).map { shards[$0] }
    }

    /// Reads every shard and hands what each produces to `consume` in `areInIncreasingOrder`,
    /// until `consume` returns false or every shard is done.
    ///
    /// `produce` runs once per shard, with the shard's index and a read transaction under
    /// `clearance` (the snapshot's, when given), and passes its rows, each shard's already in order, to its third argument,
    /// which returns false once no more are wanted. For a plain store it runs on the calling
    /// thread; for a corpus each shard runs on a thread of its own, up to 256 rows ahead of the
    /// merge. A shard's error stops every shard and is rethrown.
    public func merge<Row: Sendable>(
        clearance: Clearance, in snapshot: CorpusSnapshot? = nil, by areInIncreasingOrder: (Row, Row) -> Bool,
        produce: @escaping @Sendable (_ shard: Int, _ tx: Transaction, _ emit: (Row) throws -> Bool) throws -> Void,
        consume: (Row) throws -> Bool
    ) throws {
        guard isSharded else {
            return try read(0, clearance: clearance, in: snapshot) { tx in try produce(0, tx, consume) }
        }
        let streams = shards.indices.map { _ in ShardStream<Row>() }
        for index in shards.indices {
            let stream = streams[index]
            let thread = Thread {
                do {
                    // A snapshot's transaction moves to this thread while the caller waits (MDB_NOTLS).
                    try self.read(index, clearance: clearance, in: snapshot) { tx in try produce(index, tx, stream.push) }
                    stream.finish(nil)
                } catch {
                    stream.finish(error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        // Every thread ends before this returns: their transactions must not outlive the call.
        defer {
            for stream in streams { stream.cancel() }
            for stream in streams { stream.waitUntilFinished() }
        }
        var heads: [Row?] = try streams.map { try $0.pop() }
        while true {
            var best: Int? = nil
            for (i, head) in heads.enumerated() {
                guard let head else { continue }
                if let b = best, let current = heads[b], !areInIncreasingOrder(head, current) { continue }
                best = i
            }
            guard let chosen = best, let row = heads[chosen] else { return }
            guard try consume(row) else { return }
            heads[chosen] = try streams[chosen].pop()
        }
    }
}

/// Read transactions on every shard of a corpus, open together: one state of the whole corpus
/// for a read that passes over it several times. (Label-set and projector versions are pinned
/// by the manifest anyway; a sample import, which carries no version, commits shard by shard,
/// and separate passes could see it half done.)
public final class CorpusSnapshot: @unchecked Sendable {
    /// One per shard, in shard order; each used by one thread at a time.
    let transactions: [Transaction]
    /// The corpus it was taken of: a snapshot reads only that one.
    let owner: ObjectIdentifier

    init(_ transactions: [Transaction], of corpus: Corpus) {
        self.transactions = transactions
        owner = ObjectIdentifier(corpus)
    }
}

extension Corpus {
    /// Runs `body` with a read transaction on every shard, each open until it returns.
    public func withSnapshot<T>(clearance: Clearance, _ body: (CorpusSnapshot) throws -> T) throws -> T {
        try withReadTransactions(on: shards, clearance: clearance) { try body(CorpusSnapshot($0, of: self)) }
    }

    /// Runs `body` with shard `index`'s read transaction: the snapshot's, or a new one.
    func read<T>(_ index: Int, clearance: Clearance, in snapshot: CorpusSnapshot?, _ body: (Transaction) throws -> T) throws -> T {
        if let snapshot {
            precondition(snapshot.owner == ObjectIdentifier(self), "a corpus snapshot read through another corpus")
            return try body(snapshot.transactions[index])
        }
        return try shards[index].read(clearance: clearance, body)
    }
}

/// Runs `body` with a read transaction on each of `stores` (in their order), each open until it
/// returns: one state of several stores (a corpus's shards) at once.
func withReadTransactions<T>(on stores: [Store], clearance: Clearance, _ body: ([Transaction]) throws -> T) throws -> T {
    func nest(_ opened: [Transaction]) throws -> T {
        guard opened.count < stores.count else { return try body(opened) }
        return try stores[opened.count].read(clearance: clearance) { tx in try nest(opened + [tx]) }
    }
    return try nest([])
}

/// Runs `walk`, a pass whose callback cannot stop it, handing each row to `emit` until `emit`
/// returns false (a merge that wants no more rows), then ends the pass.
func emitting<Row>(_ emit: (Row) throws -> Bool, _ walk: ((Row) throws -> Void) throws -> Void) throws {
    // `emit` runs only while `walk` does.
    try withoutActuallyEscaping(emit) { emit in
        do {
            try walk { row in guard try emit(row) else { throw EmittingStopped() } }
        } catch is EmittingStopped {}
    }
}

/// Thrown to end a pass once its rows are no longer wanted (``emitting(_:_:)``).
private struct EmittingStopped: Error {}

/// The rows one shard's thread has produced and the merge has not taken yet: a bounded queue
/// under one lock, with the producer's outcome.
final class ShardStream<Row>: @unchecked Sendable {
    private let condition = NSCondition()
    private var rows: [Row] = []
    private var head = 0
    private var finished = false
    private var cancelled = false
    private var failure: (any Error)?
    private let capacity = 256

    /// Queues a row, waiting while the queue is full; false once the merge wants no more.
    func push(_ row: Row) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while rows.count - head >= capacity && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        rows.append(row)
        condition.broadcast()
        return true
    }

    /// The next row, waiting for one; nil when the producer finished; its error when it failed.
    func pop() throws -> Row? {
        condition.lock()
        defer { condition.unlock() }
        while head == rows.count && !finished { condition.wait() }
        if head < rows.count {
            let row = rows[head]
            head += 1
            if head >= capacity { rows.removeFirst(head); head = 0 }
            condition.broadcast()
            return row
        }
        if let failure { throw failure }
        return nil
    }

    /// Records that the producer ended, with its error if it failed.
    func finish(_ error: (any Error)?) {
        condition.lock()
        finished = true
        failure = error
        condition.broadcast()
        condition.unlock()
    }

    /// Tells the producer to stop at its next row.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits for the producer's thread to finish.
    func waitUntilFinished() {
        condition.lock()
        while !finished { condition.wait() }
        condition.unlock()
    }
}

extension Corpus {
    /// Verifies every shard (``Transaction/verify()``) and, for a corpus, that each shard holds
    /// only ids the routing rule gives it (the manifest's checksum was checked on open): one
    /// report, each problem's table prefixed with its shard's path.
    public func verify(clearance: Clearance) throws -> VerificationReport {
        guard let manifest else { return try shards[0].read(clearance: clearance) { try $0.verify() } }
        var report = VerificationReport()
        for (index, shard) in shards.enumerated() {
            let name = manifest.shards[index]
            let part = try shard.read(clearance: clearance) { tx -> VerificationReport in
                var part = try tx.verify()
                try tx.walkSampleIDs(descending: false) { id in
                    if manifest.shard(of: id) != index {
                        part.problems.append(.init(table: "samples", key: "\(id)",
                                                   detail: "the routing rule gives this id to \(manifest.shard(of: id).map { manifest.shards[$0] } ?? "no shard"), not this one"))
                    }
                    return true
                }
                return part
            }
            report.problems += part.problems.map { .init(table: "\(name)/\($0.table)", key: $0.key, detail: $0.detail) }
            report.samplesChecked += part.samplesChecked
            report.blocksChecked += part.blocksChecked
            report.recordsChecked += part.recordsChecked
        }
        return report
    }
}

extension CorpusManifest {
    /// The routing rule's name: `hash` or `range`.
    public var ruleName: String {
        switch routing {
        case .hash: "hash"
        case .range: "range"
        }
    }
}

extension Corpus {
    /// The k nearest neighbours of each query across every shard, equal to one store's answer
    /// over the same samples: each shard returns its own k nearest, re-ranked by exact similarity
    /// (``Transaction/nearestNeighbors(of:queries:k:metric:include:)``), and the merge keeps the
    /// k nearest of those, ties by smaller id. Any of the global k nearest is among its own
    /// shard's k nearest, so nothing is lost.
    ///
    /// - Parameter filter: only samples matching it are candidates (bound in each shard).
    public func nearestNeighbors(
        of queries: [Float], queries count: Int, k: Int, metric: NeighborMetric, where filter: QueryExpression?, clearance: Clearance,
        in snapshot: CorpusSnapshot? = nil
    ) throws -> [[Neighbor]] {
        var merged = [[Neighbor]](repeating: [], count: count)
        for index in shards.indices {
            let part = try read(index, clearance: clearance, in: snapshot) { tx in
                try tx.nearestNeighbors(of: queries, queries: count, k: k, metric: metric, include: try filter.map { try tx.matcher(for: $0) })
            }
            for i in 0..<count { merged[i] += part[i] }
        }
        return merged.map { Array($0.sorted(by: Neighbor.nearer).prefix(k)) }
    }
}

extension Corpus {
    /// Every label set as the corpus sees it: shard 0's sets and versions (every shard has the
    /// same), each version's counts taken over the shards — `labelled` summed; `rows`,
    /// `soft_bytes` and fidelity summed (weighted) for versions imported through the corpus, and
    /// the whole store's (shard 0's record) for versions from before the split. A version any
    /// shard redacts (the clearance does not see all of that shard) is redacted.
    public func labelSets(clearance: Clearance, in snapshot: CorpusSnapshot? = nil) throws -> [LabelSet] {
        let perShard = try shards.indices.map { index in try read(index, clearance: clearance, in: snapshot) { try $0.labelSets() } }
        guard let manifest else { return perShard[0] }
        return perShard[0].map { set in
            var whole = set
            for index in set.versions.indices {
                let parts = perShard.compactMap { sets in sets.first { $0.name == set.name }.flatMap { index < $0.versions.count ? $0.versions[index] : nil } }
                var version = LabelSetVersion.combined(parts)
                if index < manifest.splitVersions[set.name] ?? 0 {
                    let inherited = set.versions[index]
                    (version.rows, version.softBytes, version.fidelity, version.views) = (inherited.rows, inherited.softBytes, inherited.fidelity, inherited.views)
                }
                if version.statisticsRedacted { version.redactStatistics() }
                whole.versions[index] = version
            }
            return whole
        }
    }
}
