import Foundation
import Testing
@testable import LabelDB

@Suite("Projectors in the store")
struct ProjectorStoreTests {
    /// A store holding a `ProjectorProblem`'s embeddings (ids 1…n) and its teacher as label set `teacher`.
    func prepared(_ problem: ProjectorProblem, codec: SoftLabelCodec = .denseF32) throws -> (TemporaryDirectory, Store) {
        let dir = TemporaryDirectory()
        let store = try Store.create(at: dir.file("store"), schema: Schema(dimension: problem.d, classes: (0..<problem.c).map { "c\($0)" }))
        let ids = (1...UInt64(problem.n)).map { $0 }
        try store.write(clearance: .all) { tx in
            try tx.put(SampleBatch(ids: ids, embeddings: problem.x))
            try tx.importLabels(.soft(problem.p), ids: ids, into: "teacher", codec: codec, agent: "t", normalize: true)
        }
        return (dir, store)
    }

    @Test("regeneration on read equals the fitted model; new samples are unfitted, replaced embeddings stale")
    func regenerateOnRead() throws {
        let problem = ProjectorProblem(n: 600, headScale: 0.8)
        let (dir, store) = try prepared(problem)
        _ = dir
        defer { store.close() }
        try store.write(clearance: .all) { tx in try tx.importHead("text", values: problem.head, rows: problem.d, columns: problem.c) }
        var options = ProjectorFitOptions(rank: 3)
        options.epochs = 2
        let info = try store.fitProjector("hello", from: LabelSetReference(name: "teacher"), options: options, head: "text", clearance: .all)
        #expect(info.version == 1 && info.samples == 600 && info.head == "text")
        let ids: [UInt64] = [1, 2, 300, 600]
        let labels = try store.read(clearance: .all) { tx in try tx.regenerate(ids, with: tx.load(ProjectorReference(name: "hello"))) }
        let model = try store.read(clearance: .all) { tx in try tx.load(ProjectorReference(name: "hello")).model }
        let expected = model.regenerate(ids.flatMap { id in Array(problem.x[(Int(id - 1) * problem.d)..<(Int(id) * problem.d)]) }, rows: 4, head: problem.head)
        for (i, label) in labels.enumerated() {
            #expect(label.status == .regenerated)
            for j in 0..<problem.c { #expect(abs(label.probabilities[j] - expected[i * problem.c + j]) < 1e-5) }
        }
        // A sample imported after the fit, and a fitted sample whose embedding is replaced.
        try store.write(clearance: .all) { tx in
            try tx.put(Sample(id: 5000, embedding: Array(problem.x[0..<problem.d])))
            try tx.put(Sample(id: 2, embedding: Array(repeating: 0.25, count: problem.d)))
        }
        let after = try store.read(clearance: .all) { tx in try tx.regenerate([5000, 2, 3], with: tx.load(ProjectorReference(name: "hello"))) }
        #expect(after.map(\.status) == [.unfitted, .stale, .regenerated])
    }

    @Test("a fit that reads its rows from the store on demand equals the fit of the same rows in memory, bit for bit")
    func streamedFitEqualsInMemory() throws {
        // topk codec: the rows the store hands the fit are decoded labels, not the teacher as given.
        let problem = ProjectorProblem(n: 700, headScale: 0.8)
        let (dir, store) = try prepared(problem, codec: .topKF16(4))
        _ = dir
        defer { store.close() }
        try store.write(clearance: .all) { tx in
            try tx.importHead("text", values: problem.head, rows: problem.d, columns: problem.c)
            // A sample without a soft label is not fitted on.
            try tx.put(Sample(id: 9_999, embedding: Array(problem.x[0..<problem.d])))
        }
        var options = ProjectorFitOptions(rank: 3)
        options.holdout = 0.1
        options.seed = 7
        options.maxSteps = 60
        options.batchSize = 64
        options.fitTemperature = true
        let info = try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: options, head: "text", maxKL: 0.01, clearance: .all)
        let (stored, x, p) = try store.read(clearance: .all) { tx -> (ProjectorModel, [Float], [Float]) in
            var x: [Float] = [], p: [Float] = []
            try tx.forEachLabel(in: LabelSetReference(name: "teacher")) { id, label in
                x += try tx.sample(id)!.embedding
                p += label.soft!
                return true
            }
            return (try tx.load(ProjectorReference(name: "p")).model, x, p)
        }
        let inMemory = try ProjectorFitter.fit(embeddings: x, teacher: p, rows: problem.n, dimension: problem.d, classes: problem.c, head: problem.head, options: options)
        #expect(stored == inMemory.model)
        var report = info.report
        report.seconds = inMemory.report.seconds
        #expect(report == inMemory.report)
        #expect(info.samples == problem.n && info.corrections > 0)
        let expected = try ProjectorFitter.corrections(inMemory.model, MatrixFitRows(x: x, p: p, count: problem.n, dimension: problem.d, classes: problem.c),
                                                       head: problem.head, maxKL: 0.01, requireTop1: false)
        #expect(info.corrections == expected.count)
    }

    @Test("with a bound, every fitted sample reads within it (corrections where needed)")
    func boundHoldsEverywhere() throws {
        // A teacher of rank 4 fitted at rank 1: many samples break a tight bound.
        let problem = ProjectorProblem(n: 500, rank: 4, seed: 12)
        let (dir, store) = try prepared(problem, codec: .denseF32)
        _ = dir
        defer { store.close() }
        var options = ProjectorFitOptions(rank: 1)
        options.epochs = 1
        let maxKL = 0.02
        let info = try store.fitProjector("low", from: LabelSetReference(name: "teacher"), options: options, maxKL: maxKL, requireTop1: true, clearance: .all)
        #expect(info.corrections > 0 && info.corrections < 500)
        let ids = (1...UInt64(problem.n)).map { $0 }
        let labels = try store.read(clearance: .all) { tx in try tx.regenerate(ids, with: tx.load(ProjectorReference(name: "low"))) }
        #expect(labels.filter { $0.status == .corrected }.count == info.corrections)
        for (i, label) in labels.enumerated() {
            let p = Array(problem.p[(i * problem.c)..<((i + 1) * problem.c)])
            #expect(kl(p, label.probabilities) <= maxKL + 1e-6, "sample \(label.id): \(label.status)")
            #expect(p.indices.max { p[$0] < p[$1] } == label.probabilities.indices.max { label.probabilities[$0] < label.probabilities[$1] })
        }
    }

    @Test("a byte budget picks the rank whose parameters plus corrections are smallest, and refuses a budget nothing fits")
    func budgetPicksTheSmallestTotal() throws {
        // A rank-4 teacher: rank 1 needs corrections for most rows, rank 4 almost none, and
        // rank 8's parameters cost more than rank 4's without saving corrections.
        let problem = ProjectorProblem(n: 400, d: 16, c: 12, rank: 4, seed: 3)
        let (dir, store) = try prepared(problem)
        _ = dir
        defer { store.close() }
        var options = ProjectorFitOptions(rank: 99)
        options.maxSteps = 40
        let budget = RankBudget(bytes: 1_000_000, ranks: [1, 4, 8])
        let info = try store.fitProjector("b", from: LabelSetReference(name: "teacher"), options: options, maxKL: 0.01, requireTop1: true, budget: budget, clearance: .all)
        let firstSearch = try #require(info.report.rankSearch)
        #expect(firstSearch.sampleRows == problem.n && firstSearch.probeRows == problem.n && firstSearch.budgetBytes == 1_000_000)
        #expect(firstSearch.candidates.map(\.rank) == [1, 4, 8])
        let smallest = firstSearch.candidates.min { $0.totalBytes < $1.totalBytes }!
        #expect(info.options.rank == smallest.rank && smallest.rank == 4)
        // The sample is every row, so the search's figures are the version's own.
        #expect(smallest.totalBytes == info.parameterBytes + info.correctionBytes && smallest.probeCorrections == info.corrections)
        #expect(firstSearch.candidates[0].probeCorrections > info.corrections)
        let json = projectorVersionJSON(info, name: "b", labelSet: nil, classes: problem.c)
        #expect(json["rank_search"]?["candidates"]?.arrayValue?.count == 3 && json["rank"] == 4)
        // Each candidate fitted alone equals the search's measurement of it.
        options.rank = 1
        let alone = try store.fitProjector("one", from: LabelSetReference(name: "teacher"), options: options, maxKL: 0.01, requireTop1: true, clearance: .all)
        #expect(alone.parameterBytes + alone.correctionBytes == firstSearch.candidates[0].totalBytes)

        // A sample smaller than the set: estimated, scaled to every row.
        var sampled = budget
        sampled.sampleRows = 200
        let estimated = try store.fitProjector("s", from: LabelSetReference(name: "teacher"), options: options, maxKL: 0.01, requireTop1: true, budget: sampled, clearance: .all)
        // Fitted on 200 rows, corrections counted on the other 200; the chosen rank then fitted
        // on every row, its measured bytes recorded beside the estimate.
        let sampledSearch = try #require(estimated.report.rankSearch)
        #expect(sampledSearch.sampleRows == 200 && sampledSearch.probeRows == 200 && estimated.options.rank == 4)
        #expect(sampledSearch.candidates.first { $0.rank == 4 }?.measuredBytes == estimated.parameterBytes + estimated.correctionBytes)

        // A sample can rank candidates wrongly: when the best-estimated one measures over the
        // budget, the next is fitted on every row; one estimated beyond the slack is not tried.
        let rows = MatrixFitRows(x: problem.x, p: problem.p, count: problem.n, dimension: problem.d, classes: problem.c)
        let rank1 = alone.parameterBytes + alone.correctionBytes, rank4 = smallest.totalBytes
        var misranked = RankSearch(budgetBytes: (rank1 + rank4) / 2, sampleRows: 0, probeRows: 0, candidates: [
            RankCandidate(rank: 8, parameterBytes: 10 * rank1, probeCorrections: 0, correctionBytes: 0),
            RankCandidate(rank: 4, parameterBytes: 2, probeCorrections: 0, correctionBytes: 0),
            RankCandidate(rank: 1, parameterBytes: 1, probeCorrections: 0, correctionBytes: 0),
        ])
        let fallback = try ProjectorFitter.fitWithinBudget(rows, search: &misranked, head: nil, options: options, maxKL: 0.01, requireTop1: true, progress: nil)
        #expect(fallback.rank == 4 && fallback.outcome.totalBytes == rank4)
        #expect(misranked.candidates.map(\.measuredBytes) == [nil, rank4, rank1])
        misranked.budgetBytes = 10
        #expect(throws: ProjectorError.self) { _ = try ProjectorFitter.fitWithinBudget(rows, search: &misranked, head: nil, options: options, maxKL: 0.01, requireTop1: true, progress: nil) }

        // Refusals write nothing.
        let before = fileBytes(dir.file("store") + "/data.mdb")
        let tight = RankBudget(bytes: 100, ranks: [1, 4])
        #expect(throws: ProjectorError.self) { try store.fitProjector("t", from: LabelSetReference(name: "teacher"), options: options, maxKL: 0.01, budget: tight, clearance: .all) }
        do {
            try store.fitProjector("t", from: LabelSetReference(name: "teacher"), options: options, maxKL: 0.01, budget: tight, clearance: .all)
        } catch let error as ProjectorError {
            guard case .overBudget(let rank, let bytes, 100, false) = error else { Issue.record("\(error)"); return }
            #expect([1, 4].contains(rank) && bytes > 100 && error.description.contains("nothing was written"))
        }
        #expect(throws: ProjectorError.self) { try store.fitProjector("t", from: LabelSetReference(name: "teacher"), options: options, budget: budget, clearance: .all) }
        #expect(throws: ProjectorError.invalidRank(rank: 12, limit: 11)) {
            try store.fitProjector("t", from: LabelSetReference(name: "teacher"), options: options, maxKL: 0.01, budget: RankBudget(bytes: 10_000, ranks: [2, 12]), clearance: .all)
        }
        #expect(fileBytes(dir.file("store") + "/data.mdb") == before)
        #expect(RankBudget.defaultRanks(dimension: 512, classes: 1000) == [8, 16, 32, 64, 128, 256])
        #expect(RankBudget.defaultRanks(dimension: 16, classes: 12) == [8])
        #expect(RankBudget.defaultRanks(dimension: 4, classes: 6) == [1, 2])
        // Fewer than two samples' worth of rows: half to fit, half to probe (never a tiny probe).
        var nearlyAll = budget
        nearlyAll.sampleRows = 300
        let search = try ProjectorFitter.searchRank(MatrixFitRows(x: problem.x, p: problem.p, count: problem.n, dimension: problem.d, classes: problem.c),
                                                    budget: nearlyAll, head: nil, options: options, maxKL: 0.01, requireTop1: true, progress: nil).search
        #expect(search.sampleRows == 200 && search.probeRows == 200)
    }

    @Test("a correction is the fewest top classes that meet the bound itself, not half of it")
    func correctionsUseTheWholeBound() throws {
        var rng = SplitMix64(seed: 5)
        for _ in 0..<50 {
            // Peaked but with no probability f16 flushes to zero (dense f32 would be the only codec that meets a bound then).
            var p = (0..<200).map { _ in exp(6 * Float.random(in: -1...1, using: &rng)) }
            let sum = p.reduce(0, +)
            p = p.map { $0 / sum }
            for maxKL in [0.01, 0.05, 0.2] {
                let (codec, bytes) = p.withUnsafeBufferPointer { CorrectionCodec.encode($0, maxKL: maxKL, requireTop1: true) }
                #expect(codec == 1)
                var decoded = [Float](repeating: 0, count: p.count)
                try bytes.withUnsafeBytes { raw in try decoded.withUnsafeMutableBufferPointer { try CorrectionCodec.codec(codec).decode(raw, into: $0) } }
                #expect(kl(p, decoded) <= maxKL)
                #expect(p.indices.max { p[$0] < p[$1] } == decoded.indices.max { decoded[$0] < decoded[$1] })
                // At half the bound the same row needs at least as many classes.
                var half: [UInt8] = []
                p.withUnsafeBufferPointer { SoftLabelCodec.adaptive(maxKL / 2).encode($0, into: &half) }
                #expect(bytes.count <= half.count)
            }
        }
    }

    @Test("versions stay loadable; bad input is refused and writes nothing")
    func versionsAndBadInput() throws {
        let problem = ProjectorProblem(n: 200)
        let (dir, store) = try prepared(problem)
        _ = dir
        defer { store.close() }
        var options = ProjectorFitOptions(rank: 2)
        options.epochs = 0
        try store.fitProjector("p", from: LabelSetReference(name: "teacher"), options: options, clearance: .all)
        options.rank = 3
        try store.fitProjector("p", from: LabelSetReference(parsing: "teacher@1"), options: options, clearance: .all)
        let p1 = try ProjectorReference(parsing: "p@1"), p3 = try ProjectorReference(parsing: "p@3")
        #expect(try store.read(clearance: .all) { try $0.load(p1) }.model.rank == 2)
        #expect(try store.read(clearance: .all) { try $0.load(ProjectorReference(name: "p")) }.model.rank == 3)
        #expect(throws: ProjectorError.unknownVersion(name: "p", version: 3, latest: 2)) { _ = try store.read(clearance: .all) { try $0.load(p3) } }
        #expect(throws: ProjectorError.unknownProjector("q")) { _ = try store.read(clearance: .all) { try $0.load(ProjectorReference(name: "q")) } }
        let before = fileBytes(dir.file("store") + "/data.mdb")
        try store.write(clearance: .all) { tx in try tx.importLabels(.hard(Array(repeating: 1, count: 10)), ids: (1...10).map { $0 }, into: "hardonly", agent: "h") }
        let afterLabels = fileBytes(dir.file("store") + "/data.mdb")
        #expect(before != afterLabels)
        #expect(throws: ProjectorError.noSoftLabels("hardonly")) { try store.fitProjector("x", from: LabelSetReference(name: "hardonly"), options: options, clearance: .all) }
        #expect(throws: ProjectorError.invalidRank(rank: 12, limit: 11)) { try store.fitProjector("x", from: LabelSetReference(name: "teacher"), options: ProjectorFitOptions(rank: 12), clearance: .all) }
        #expect(throws: ProjectorError.unknownHead("none")) { try store.fitProjector("x", from: LabelSetReference(name: "teacher"), options: options, head: "none", clearance: .all) }
        #expect(throws: ProjectorError.headShape(name: "h", rows: 3, columns: problem.c, dimension: problem.d, classes: problem.c)) {
            try store.write(clearance: .all) { tx in try tx.importHead("h", values: Array(repeating: 0, count: 3 * problem.c), rows: 3, columns: problem.c) }
        }
        #expect(fileBytes(dir.file("store") + "/data.mdb") == afterLabels)
        #expect(try store.read(clearance: .all) { try $0.projectors() }.map(\.name) == ["p"])
    }

    @Test("a NaN during fitting stops the fit, names the step, and writes nothing")
    func nanDuringFit() throws {
        let problem = ProjectorProblem(n: 300)
        let (dir, store) = try prepared(problem)
        defer { store.close() }
        let before = fileBytes(dir.file("store") + "/data.mdb")
        var options = ProjectorFitOptions(rank: 2)
        options.epochs = 3
        options.learningRate = 1e30   // diverges within a few steps
        #expect {
            try store.fitProjector("boom", from: LabelSetReference(name: "teacher"), options: options, clearance: .all)
        } throws: { error in
            guard case ProjectorError.nonFinite(let step) = error else { return false }
            return step.contains("refinement")
        }
        #expect(try store.read(clearance: .all) { try $0.projectors() }.isEmpty)
        #expect(fileBytes(dir.file("store") + "/data.mdb") == before)
    }
}
