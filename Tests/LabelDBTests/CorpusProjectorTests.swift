import Foundation
import Testing
@testable import LabelDB

/// Projector fits across a sharded corpus (issue 16): the sums over shards give the fit of the
/// same samples in one store, within the rounding of summing in another order.
@Suite("Corpus projector fits")
struct CorpusProjectorTests {
    static let classes = ["a", "b", "c", "d", "e", "f"]

    /// A store of 3,000 samples (ids with gaps, ascending) whose soft labels a noisy linear model
    /// of the embeddings made, and the corpus split from it.
    static func setUp(_ dir: TemporaryDirectory, shards: Int = 4, rule: SplitRule = .hash) throws {
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: 8, classes: classes))
        let ids = (0..<3_000).map { UInt64($0) * 3 + 1 }
        let samples = randomSamples(count: ids.count, dimension: 8, seed: 61, ids: ids)
        var rng = SeededGenerator(seed: 62)
        let w = (0..<(8 * 6)).map { _ in Float.random(in: -2...2, using: &rng) }
        let soft = samples.flatMap { sample -> [Float] in
            let z = (0..<6).map { j in (0..<8).reduce(Float(0)) { $0 + sample.embedding[$1] * w[$1 * 6 + j] } + Float.random(in: -0.5...0.5, using: &rng) }
            let e = z.map { exp($0 - z.max()!) }
            return e.map { $0 / e.reduce(0, +) }
        }
        try store.write(clearance: .all) { tx in
            _ = try tx.put(SampleBatch(samples))
            try tx.importLabels(.soft(soft), ids: ids, into: "teacher", agent: "t")
        }
        store.close()
        _ = try CorpusManifest.split(store: dir.file("store"), into: dir.file("corpus"), shards: shards, rule: rule, clearance: .all, agent: "test")
    }

    static var options: ProjectorFitOptions {
        var options = ProjectorFitOptions(rank: 3)
        options.holdout = 0.1
        options.seed = 5
        options.maxSteps = 300
        options.fitTemperature = true
        return options
    }

    /// Every sample's regenerated label and status through projector `name`, by id: from the
    /// store, or from each shard of the corpus.
    static func regenerated(_ path: String, _ name: String) throws -> [UInt64: RegeneratedLabel] {
        let corpus = try Corpus(opening: path)
        defer { corpus.close() }
        var out: [UInt64: RegeneratedLabel] = [:]
        for shard in corpus.shards {
            try shard.read(clearance: .all) { tx in
                for label in try tx.regenerate(try tx.ids(), with: try tx.load(ProjectorReference(name: name))) { out[label.id] = label }
            }
        }
        return out
    }

    /// Every sample's teacher label, by id.
    static func teacher(_ path: String) throws -> [UInt64: [Float]] {
        let store = try Store(opening: path, options: Store.Options(readOnly: true))
        defer { store.close() }
        return try store.read(clearance: .all) { tx in
            var out: [UInt64: [Float]] = [:]
            for id in try tx.ids() { out[id] = try tx.label(of: id, in: LabelSetReference(name: "teacher"))?.soft }
            return out
        }
    }

    @Test("a corpus fit equals the store's fit of the same samples within rounding, and its bound holds for every sample", arguments: [
        (SplitRule.hash, 4), (SplitRule.range, 3),
    ])
    func corpusFitEqualsStoreFit(rule: SplitRule, shards: Int) throws {
        let dir = TemporaryDirectory("corpus-fit")
        try Self.setUp(dir, shards: shards, rule: rule)
        let maxKL = 0.02
        let store = try Store(opening: dir.file("store"))
        let single = try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: Self.options, maxKL: maxKL, clearance: .all)
        store.close()
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        let sharded = try writer.fitProjector("p", from: LabelSetReference(name: "teacher"), options: Self.options, maxKL: maxKL, clearance: .all)
        writer.close()

        // The same rows, split the same way; figures equal within the rounding of another summation order.
        #expect(sharded.version == 1 && sharded.samples == single.samples && sharded.samples == 3_000)
        #expect(sharded.report.trainRows == single.report.trainRows && sharded.report.holdoutRows == single.report.holdoutRows)
        for (a, b) in [(sharded.report.closedFormMeanKL, single.report.closedFormMeanKL), (sharded.report.trainMeanKL, single.report.trainMeanKL),
                       (sharded.report.holdoutMeanKL, single.report.holdoutMeanKL)] {
            #expect(abs(a - b) <= 1e-4 * max(abs(b), 1e-3), "\(a) vs \(b)")
        }
        #expect(abs(sharded.report.trainTop1 - single.report.trainTop1) <= 2.0 / 2_700)
        #expect(abs(sharded.corrections - single.corrections) <= max(2, single.corrections / 50), "\(sharded.corrections) vs \(single.corrections)")

        // Every sample reads through its own shard: labels as the store's within 1e-3, and the
        // bound holds for each (its correction lives in its shard).
        let fromStore = try Self.regenerated(dir.file("store"), "p"), fromCorpus = try Self.regenerated(dir.file("corpus"), "p")
        let teacher = try Self.teacher(dir.file("store"))
        #expect(fromCorpus.count == 3_000 && Set(fromCorpus.keys) == Set(fromStore.keys))
        // A sample at the bound's edge may take a correction in one fit and not the other, which
        // reads another label: those are compared by the bound alone.
        var worst: Float = 0, corrected = 0, edge = 0
        for (id, label) in fromCorpus {
            if label.status == fromStore[id]!.status {
                worst = max(worst, zip(label.probabilities, fromStore[id]!.probabilities).map { abs($0 - $1) }.max()!)
            } else {
                edge += 1
            }
            #expect(label.status == .regenerated || label.status == .corrected)
            if label.status == .corrected { corrected += 1 }
            let kl = teacher[id]!.withUnsafeBufferPointer { p in label.probabilities.withUnsafeBufferPointer { klDivergence(p, $0) } }
            #expect(kl <= maxKL * 1.0001, "sample \(id): KL \(kl)")
        }
        #expect(worst <= 1e-3, "largest difference \(worst)")
        #expect(edge <= max(2, single.corrections / 50), "\(edge) samples corrected in one fit only")
        #expect(corrected == sharded.corrections)

        let manifest = try CorpusManifest.read(from: dir.file("corpus"))
        #expect(manifest.projectors["p"] == 1 && manifest.generation == 2)
        let corpus = try Corpus(opening: dir.file("corpus"))
        #expect(try corpus.verify(clearance: .all).problems.isEmpty)
        corpus.close()
    }

    @Test("a fit whose passes run in each shard's FitPartServer equals the fit on threads, bit for bit; a server of other rows refuses")
    func fitThroughPartServers() throws {
        let dir = TemporaryDirectory("corpus-fit-parts")
        try Self.setUp(dir, shards: 3)
        // The servers read a copy of the corpus (one process may not open a store for reading and
        // for writing at once; Ray actors live in processes of their own).
        try FileManager.default.copyItem(atPath: dir.file("corpus"), toPath: dir.file("remote"))
        try FileManager.default.copyItem(atPath: dir.file("corpus"), toPath: dir.file("replica"))
        let reference = LabelSetReference(name: "teacher")
        let threaded = try CorpusWriter(opening: dir.file("corpus"))
        let local = try threaded.fitProjector("p", from: reference, options: Self.options, maxKL: 0.02, clearance: .all)
        threaded.close()
        let servers = try (0..<3).map { try FitPartServer(corpus: dir.file("replica"), shard: $0, clearance: .all) }
        defer { servers.forEach { $0.close() } }
        let calls = CallCounts(3)
        let writer = try CorpusWriter(opening: dir.file("remote"))
        let remote = try writer.fitProjector("p", from: reference, options: Self.options, maxKL: 0.02, clearance: .all, parts: { shard, request in
            calls.add(shard)
            return try servers[shard].serve(request)
        })
        writer.close()
        #expect(calls.counts.allSatisfy { $0 > 10 }, "\(calls.counts)")
        var (a, b) = (local.report, remote.report)
        (a.seconds, b.seconds) = (0, 0)
        #expect(a == b && local.corrections == remote.corrections && local.correctionBytes == remote.correctionBytes && local.samples == remote.samples)
        #expect((local.report.steps ?? 0) > 0 && local.corrections > 0)
        let (fromThreads, fromServers) = (try Self.regenerated(dir.file("corpus"), "p"), try Self.regenerated(dir.file("remote"), "p"))
        #expect(fromThreads.count == 3_000 && fromThreads.allSatisfy { fromServers[$0.key] == $0.value })
        // The fit wrote "remote": its shards are past the state the replicas hold, so a next fit's
        // requests are refused there.
        func refusal(_ path: String, _ serve: @escaping FitPartExecutor) throws -> String {
            let writer = try CorpusWriter(opening: path)
            defer { writer.close() }
            do {
                _ = try writer.fitProjector("q", from: reference, options: Self.options, clearance: .all, parts: serve)
                return "no refusal"
            } catch { return "\(error)" }
        }
        let stale = try refusal(dir.file("remote")) { try servers[$0].serve($1) }
        #expect(stale.contains("not in the state the fit read"), "\(stale)")
        // A server reading under another clearance than the fit's is refused too.
        try FileManager.default.copyItem(atPath: dir.file("replica"), toPath: dir.file("third"))
        let narrow = try FitPartServer(corpus: dir.file("replica"), shard: 0, clearance: .public)
        defer { narrow.close() }
        let cleared = try refusal(dir.file("third")) { shard, request in try (shard == 0 ? narrow : servers[shard]).serve(request) }
        #expect(cleared.contains("clearance"), "\(cleared)")
        #expect(try CorpusManifest.read(from: dir.file("third")).projectors["q"] == nil)
        // Requests sent to another shard's server are refused, and nothing is written.
        let before = try CorpusManifest.read(from: dir.file("remote"))
        try FileManager.default.copyItem(atPath: dir.file("replica"), toPath: dir.file("fourth"))
        let crossed = try refusal(dir.file("fourth")) { shard, request in try servers[(shard + 1) % 3].serve(request) }
        #expect(crossed.contains("not in the state") || crossed.contains("does not hold the rows"), "\(crossed)")
        #expect(try CorpusManifest.read(from: dir.file("remote")).projectors == before.projectors)
        #expect(try CorpusManifest.read(from: dir.file("fourth")).projectors["q"] == nil)
        #expect(throws: CorpusError.self) { try servers[0].serve([2, 0, 0]) }
    }

    @Test("the closed form alone over shards matches the store's to 1e-5 in every regenerated probability")
    func closedFormOverShards() throws {
        let dir = TemporaryDirectory("corpus-fit-closed")
        try Self.setUp(dir, shards: 5)
        var options = ProjectorFitOptions(rank: 4)
        options.epochs = 0
        let store = try Store(opening: dir.file("store"))
        try store.fitProjector("c", from: LabelSetReference(name: "teacher"), options: options, clearance: .all)
        store.close()
        let writer = try CorpusWriter(opening: dir.file("corpus"))
        try writer.fitProjector("c", from: LabelSetReference(name: "teacher"), options: options, clearance: .all)
        writer.close()
        let fromStore = try Self.regenerated(dir.file("store"), "c"), fromCorpus = try Self.regenerated(dir.file("corpus"), "c")
        let worst = fromCorpus.map { id, label in zip(label.probabilities, fromStore[id]!.probabilities).map { abs($0 - $1) }.max()! }.max()!
        #expect(worst <= 1e-5, "largest difference \(worst)")
    }

    @Test("a fit killed between shards leaves the corpus reading the projector as before; the next fit replaces what it left")
    func killedFitBetweenShards() throws {
        let dir = TemporaryDirectory("corpus-fit-kill")
        try Self.setUp(dir, shards: 3)
        let corpus = dir.file("corpus")
        func fit(rank: Int) -> [String] {
            ["projector", "fit", corpus, "p", "--from", "teacher", "--rank", "\(rank)", "--epochs", "0", "--max-kl", "0.05", "--clearance", "all", "--quiet"]
        }
        let first = try runCLI(fit(rank: 2))
        #expect(first.status == 0, "\(first.stderr)")
        let before = try runCLI(["get", corpus, "4", "--regen", "p", "--format", "json", "--clearance", "all"])
        #expect(before.status == 0, "\(before.stderr)")
        let killed = try runCLI(fit(rank: 3), environment: ["LABELDB_TEST_KILL_AFTER_SHARD": "0"])
        #expect(killed.status == SIGKILL, "exit \(killed.status): \(killed.stderr)")
        // Shard 0 holds version 2; the manifest says 1, and so does every read.
        let manifest = try CorpusManifest.read(from: corpus)
        #expect(manifest.projectors["p"] == 1)
        let shard = try Store(opening: corpus + "/" + manifest.shards[0], options: Store.Options(readOnly: true))
        #expect(try shard.read(clearance: .all) { try $0.projector(named: "p")?.latest } == 2)
        shard.close()
        #expect(try runCLI(["get", corpus, "4", "--regen", "p", "--format", "json", "--clearance", "all"]).stdout == before.stdout)
        let list = try runCLI(["projector", "list", corpus, "--clearance", "all"])
        #expect(list.stdout.contains("p  v1  rank 2"), "\(list.stdout)")
        let missing = try runCLI(["get", corpus, "4", "--regen", "p@2", "--clearance", "all"])
        #expect(missing.status != 0, "\(missing.stdout)")

        // The next fit takes version 2 everywhere, replacing shard 0's orphan.
        let again = try runCLI(fit(rank: 3) + ["--format", "json"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try JSONValue.parse(again.stdout)["version"] == .int(2), "\(again.stdout)")
        #expect(try CorpusManifest.read(from: corpus).projectors["p"] == 2)
        let regenerated = try Self.regenerated(corpus, "p")
        #expect(regenerated.count == 3_000 && regenerated.values.allSatisfy { $0.status == .regenerated || $0.status == .corrected })
        let verify = try runCLI(["verify", corpus, "--clearance", "all"])
        #expect(verify.status == 0, "\(verify.stdout)")
        let log = try runCLI(["audit", corpus, "--verify-log", "--format", "json", "--clearance", "all"])
        let report = try JSONValue.parse(log.stdout)
        #expect(log.status == 0 && report["ok"] == .bool(true), "\(log.stdout)")
    }
}

/// Calls counted per shard, from any thread.
final class CallCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int]
    init(_ count: Int) { values = [Int](repeating: 0, count: count) }
    func add(_ index: Int) { lock.withLock { values[index] += 1 } }
    var counts: [Int] { lock.withLock { values } }
}
