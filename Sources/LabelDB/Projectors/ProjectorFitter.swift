import Foundation

/// Errors of the projector layer.
public enum ProjectorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Rank must be in 1 … min(d, C) − 1.
    case invalidRank(rank: Int, limit: Int)
    /// A base head whose shape is not d × C.
    case headShape(name: String, rows: Int, columns: Int, dimension: Int, classes: Int)
    /// No base head of that name.
    case unknownHead(String)
    /// A head of that name exists already.
    case headExists(String)
    /// The label set has no soft labels to fit.
    case noSoftLabels(String)
    /// No rows to fit (after the clearance and the split).
    case noRows(String)
    /// A NaN or infinity appeared while fitting; nothing was kept.
    case nonFinite(step: String)
    /// The linear system of the closed-form fit could not be solved.
    case singular(String)
    /// No projector of that name.
    case unknownProjector(String)
    /// The projector has no such version.
    case unknownVersion(name: String, version: Int, latest: Int)
    /// The projector version was fitted on data the reader's clearance does not admit.
    case notCleared(name: String, version: Int)
    /// The base head's taint label is not admitted by the clearance.
    case notClearedHead(String)
    /// A projector name that is empty, has '@' or control characters.
    case invalidName(String)
    /// An option out of range.
    case invalidOption(String)
    /// No candidate rank keeps parameters and corrections within the byte budget.
    case overBudget(rank: Int, bytes: Int, budget: Int, estimated: Bool)

    public var description: String {
        switch self {
        case .invalidRank(let rank, let limit): "rank \(rank) must be between 1 and \(limit) (below min(dimension, classes))"
        case .headShape(let name, let rows, let columns, let d, let c): "head `\(name)` is \(rows) × \(columns); the store needs \(d) × \(c) (dimension × classes)"
        case .notCleared(let name, let version): "projector `\(name)@\(version)` was fitted on data your clearance does not admit"
        case .unknownHead(let name): "no base head named `\(name)`"
        case .notClearedHead(let name): "base head `\(name)` carries a taint label your clearance does not admit"
        case .headExists(let name): "a base head named `\(name)` exists already"
        case .noSoftLabels(let set): "label set `\(set)` has no soft labels to fit"
        case .noRows(let what): "no rows to fit: \(what)"
        case .nonFinite(let step): "a NaN or infinity appeared during fitting (\(step)); nothing was kept"
        case .singular(let what): "the closed-form fit failed: \(what)"
        case .unknownProjector(let name): "no projector named `\(name)`"
        case .unknownVersion(let name, let version, let latest): "projector `\(name)` has no version \(version) (versions 1…\(latest))"
        case .invalidName(let name): "'\(name)' is not a valid name (non-empty, no '@', no control characters)"
        case .invalidOption(let reason): reason
        case .overBudget(let rank, let bytes, let budget, let estimated):
            "the smallest projector found, rank \(rank), takes \(estimated ? "an estimated " : "")\(bytes) bytes with its corrections, over the budget of \(budget) bytes; nothing was written (raise the budget, loosen the bound or try other ranks)"
        }
    }
}

/// How to fit a projector.
public struct ProjectorFitOptions: Sendable, Equatable, Codable {
    /// The rank r of the low-rank correction A·B.
    public var rank: Int
    /// The fraction of rows held out (seeded) to measure generalisation; 0 fits on all.
    public var holdout: Double = 0
    /// The seed of the split and of the minibatch order.
    public var seed: UInt64 = 0
    /// Ridge strength, relative to the mean eigenvalue of XᵀX.
    public var ridge: Double = 1e-3
    /// Fixed passes of gradient refinement after the closed form (0 keeps the closed form), with
    /// no early stopping; nil (the default) budgets the refinement by ``maxSteps`` instead.
    public var epochs: Int? = nil
    /// The most gradient steps of the refinement when ``epochs`` is nil. It stops earlier when the
    /// validation split (a seeded 5% of the fitted rows, at most 10,000, kept out of the steps)
    /// has not improved for ``patience`` checks; the model kept is the best one it saw.
    public var maxSteps: Int = 4_000
    /// Validation checks without improvement before the refinement stops early.
    public var patience: Int = 8
    /// Rows per gradient step.
    public var batchSize: Int = 2048
    /// Adam's step size.
    public var learningRate: Double = 3e-3
    /// Also fit the softmax temperature T (a one-dimensional search on the fitted rows' cross-
    /// entropy after the other parameters); otherwise T = 1.
    public var fitTemperature: Bool = false

    /// Options with the given rank and defaults for the rest.
    public init(rank: Int) { self.rank = rank }

    enum CodingKeys: String, CodingKey {
        case rank, holdout, seed, ridge, epochs, patience
        case batchSize = "batch_size", learningRate = "learning_rate", fitTemperature = "fit_temperature", maxSteps = "max_steps"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        rank = try c.decode(Int.self, forKey: .rank)
        holdout = try c.decode(Double.self, forKey: .holdout)
        seed = try c.decode(UInt64.self, forKey: .seed)
        ridge = try c.decode(Double.self, forKey: .ridge)
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        learningRate = try c.decode(Double.self, forKey: .learningRate)
        fitTemperature = try c.decodeIfPresent(Bool.self, forKey: .fitTemperature) ?? false
        // Fits recorded before step budgets ran a fixed number of epochs and stored it.
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps) ?? 0
        patience = try c.decodeIfPresent(Int.self, forKey: .patience) ?? 0
    }
}

/// What a fit achieved, on the rows it was fitted on and on the held-out rows.
public struct ProjectorFitReport: Sendable, Equatable, Codable {
    /// Rows fitted on.
    public var trainRows: Int
    /// Rows held out.
    public var holdoutRows: Int
    /// Mean KL(teacher ‖ regenerated) in nats on the fitted rows.
    public var trainMeanKL: Double
    /// Largest KL on the fitted rows.
    public var trainMaxKL: Double
    /// Top-1 agreement with the teacher on the fitted rows.
    public var trainTop1: Double
    /// Mean KL on the held-out rows (0 when none are held out).
    public var holdoutMeanKL: Double
    /// Largest KL on the held-out rows.
    public var holdoutMaxKL: Double
    /// Top-1 agreement on the held-out rows.
    public var holdoutTop1: Double
    /// Mean KL of the closed-form solution alone, before gradient refinement.
    public var closedFormMeanKL: Double
    /// Wall-clock seconds of the fit.
    public var seconds: Double
    /// Gradient steps the refinement took (nil in reports recorded before step budgets).
    public var steps: Int? = nil
    /// Why the refinement stopped: `epochs` (the fixed passes ran), `max_steps` (the budget ran
    /// out), `patience` (the validation split stopped improving), `no_refinement` (0 epochs or
    /// steps, or no gradient step improved on the closed form); nil in older reports.
    public var stopReason: String? = nil
    /// The rank search that chose the rank, when the fit was given a byte budget.
    public var rankSearch: RankSearch? = nil

    enum CodingKeys: String, CodingKey {
        case rankSearch = "rank_search"
        case trainRows = "train_rows", holdoutRows = "holdout_rows"
        case trainMeanKL = "train_mean_kl", trainMaxKL = "train_max_kl", trainTop1 = "train_top1"
        case holdoutMeanKL = "holdout_mean_kl", holdoutMaxKL = "holdout_max_kl", holdoutTop1 = "holdout_top1"
        case closedFormMeanKL = "closed_form_mean_kl", seconds, steps, stopReason = "stop_reason"
    }
}

/// A byte budget for a projector and its corrections, and the ranks to try under it.
public struct RankBudget: Sendable, Equatable {
    /// The most bytes the parameters and the corrections may take together (a version's `total_bytes`).
    public var bytes: Int
    /// The candidate ranks.
    public var ranks: [Int]
    /// Each candidate is fitted on a seeded sample of at most this many of the label set's rows
    /// (all of them when there are fewer, which makes the search exact), and its correction bytes
    /// are counted on as many other rows and scaled up to every row.
    public var sampleRows: Int = 50_000
    /// Candidates estimated at up to this many times the budget are still fitted on every row
    /// when the better-ranked ones measure over it: a sample's estimates are rough at scale.
    public static let estimateSlack = 1.5

    /// A budget with the given candidates.
    public init(bytes: Int, ranks: [Int]) { self.bytes = bytes; self.ranks = ranks }

    /// Powers of two from 8 up to the largest rank d and C allow (from 1 when that is below 8):
    /// the ranks tried when none are given.
    public static func defaultRanks(dimension: Int, classes: Int) -> [Int] {
        let limit = min(dimension, classes) - 1
        return Array(sequence(first: limit >= 8 ? 8 : 1, next: { $0 * 2 }).prefix { $0 <= limit })
    }
}

/// What a rank search measured: every candidate, and the rows it was measured on.
public struct RankSearch: Sendable, Equatable, Codable {
    /// The budget, in bytes.
    public var budgetBytes: Int
    /// The rows each candidate was fitted on.
    public var sampleRows: Int
    /// The rows its corrections were counted on: others than the sample's when there are enough
    /// (at most as many), else the sample itself (every row: the search is then exact).
    public var probeRows: Int
    /// The candidates, in the order tried.
    public var candidates: [RankCandidate]

    enum CodingKeys: String, CodingKey {
        case budgetBytes = "budget_bytes", sampleRows = "sample_rows", probeRows = "probe_rows", candidates
    }
}

/// One candidate rank of a rank search.
public struct RankCandidate: Sendable, Equatable, Codable {
    /// The rank.
    public var rank: Int
    /// Its parameters' bytes (as a version's `parameter_bytes`).
    public var parameterBytes: Int
    /// Corrections the bound took on the probe rows.
    public var probeCorrections: Int
    /// Their bytes (keys and values) scaled from the probe rows to every row.
    public var correctionBytes: Int
    /// Parameters plus corrections, as estimated.
    public var totalBytes: Int { parameterBytes + correctionBytes }
    /// Parameters plus corrections as measured when this rank was fitted on every row (nil when it was not).
    public var measuredBytes: Int? = nil

    enum CodingKeys: String, CodingKey {
        case rank, parameterBytes = "parameter_bytes", probeCorrections = "probe_corrections", correctionBytes = "correction_bytes"
        case measuredBytes = "measured_bytes"
    }
}

/// Fits projectors: reduced-rank ridge regression in closed form, then cross-entropy refinement.
public enum ProjectorFitter {
    /// Fits p(x) = softmax(s·x·W0 + x·A·B + b) to teacher distributions.
    ///
    /// - Parameters:
    ///   - x: `rows × dimension` embeddings, row-major.
    ///   - p: `rows × classes` teacher probabilities, row-major.
    ///   - head: an optional base head W0, `dimension × classes`.
    ///   - progress: told what is happening, with a fraction done.
    /// - Returns: the model, its report, and which rows were fitted on (the rest were held out).
    /// - Throws: ``ProjectorError``.
    public static func fit(
        embeddings x: [Float], teacher p: [Float], rows n: Int, dimension d: Int, classes c: Int,
        head: [Float]?, options: ProjectorFitOptions, progress: ((String, Double) -> Void)? = nil
    ) throws -> (model: ProjectorModel, report: ProjectorFitReport, trainRows: [Int]) {
        guard x.count == n * d, p.count == n * c else { throw ProjectorError.invalidOption("shapes do not match") }
        return try fit(MatrixFitRows(x: x, p: p, count: n, dimension: d, classes: c), head: head, options: options, progress: progress)
    }

    /// Fits a projector to `data`, reading it in chunks and minibatches only (see ``FitRows``).
    static func fit(
        _ data: some FitRows, head: [Float]?, options: ProjectorFitOptions, progress: ((String, Double) -> Void)? = nil
    ) throws -> (model: ProjectorModel, report: ProjectorFitReport, trainRows: [Int]) {
        let n = data.count, d = data.dimension, c = data.classes
        let started = Date()
        let limit = min(d, c) - 1
        guard options.rank >= 1, options.rank <= limit else { throw ProjectorError.invalidRank(rank: options.rank, limit: limit) }
        guard options.holdout >= 0, options.holdout < 1 else { throw ProjectorError.invalidOption("the holdout fraction must be in [0, 1)") }
        guard options.epochs ?? 0 >= 0, options.maxSteps >= 0, options.patience >= 1, options.batchSize >= 1, options.learningRate > 0 else {
            throw ProjectorError.invalidOption("epochs and max steps must be ≥ 0; patience, batch size and learning rate positive")
        }
        if let head, head.count != d * c { throw ProjectorError.headShape(name: "head", rows: head.count / max(c, 1), columns: c, dimension: d, classes: c) }

        // Seeded split. Rows are used through index lists, in chunks: the fitter never copies the
        // whole n × C teacher (at ImageNet scale that is gigabytes per copy).
        var rng = SplitMix64(seed: options.seed)
        var order = Array(0..<n)
        order.shuffle(using: &rng)
        let holdoutCount = Int((Double(n) * options.holdout).rounded())
        let holdoutRows = Array(order.prefix(holdoutCount)).sorted()
        let trainRows = Array(order.dropFirst(holdoutCount)).sorted()
        order = []
        guard !trainRows.isEmpty else { throw ProjectorError.noRows("every row is held out") }
        let nt = trainRows.count

        progress?("closed form", 0)
        var model = try closedForm(data, rows: trainRows, head: head, rank: options.rank, ridge: options.ridge)
        let closed = try evaluate(model, data, rows: trainRows, head: head)
        // The fitted rows' figures for the model kept: each pass over them reads every row.
        var train = closed
        guard closed.meanKL.isFinite else { throw ProjectorError.nonFinite(step: "closed form") }

        var steps = 0, stopReason = "no_refinement"
        if options.epochs ?? options.maxSteps > 0 {
            let refined = try refine(model, data, rows: trainRows, head: head, options: options, rng: &rng, progress: progress)
            let after = try evaluate(refined.model, data, rows: trainRows, head: head)
            // Keep whichever fits the teacher better on the fitted rows (refinement minimises
            // cross-entropy, which equals KL plus a constant, so this is the same objective).
            steps = refined.steps
            if after.meanKL < closed.meanKL { model = refined.model; stopReason = refined.stopReason; train = after }
        }
        if options.fitTemperature {
            progress?("temperature", 0.99)
            // A seeded sample of at most 50,000 fitted rows is plenty for one parameter.
            var sample = trainRows
            if sample.count > 50_000 { sample.shuffle(using: &rng); sample = Array(sample.prefix(50_000)).sorted() }
            model.temperature = try fitTemperature(model, data, rows: sample, head: head)
            train = try evaluate(model, data, rows: trainRows, head: head)
        }
        var held = (meanKL: 0.0, maxKL: 0.0, top1: 0.0)
        if !holdoutRows.isEmpty {
            held = try evaluate(model, data, rows: holdoutRows, head: head)
        }
        progress?("done", 1)
        let report = ProjectorFitReport(
            trainRows: nt, holdoutRows: holdoutRows.count,
            trainMeanKL: train.meanKL, trainMaxKL: train.maxKL, trainTop1: train.top1,
            holdoutMeanKL: held.meanKL, holdoutMaxKL: held.maxKL, holdoutTop1: held.top1,
            closedFormMeanKL: closed.meanKL, seconds: Date().timeIntervalSince(started), steps: steps, stopReason: stopReason)
        return (model, report, trainRows)
    }

    static let chunkRows = 4096

    /// Reduced-rank ridge regression of the centred log-probabilities on the centred embeddings:
    /// the ridge solution W, then its best rank-r approximation in the fitted values' metric
    /// (top eigenvectors of (XW)ᵀ(XW)), which is the optimal rank-r correction.
    ///
    /// Everything it needs is in XᵀX (d × d) and XᵀY (d × C) of the centred data, so the rows are
    /// streamed in chunks (two passes: means, then the centred products); with a head,
    /// ⟨XW0, Y⟩ = ⟨W0, XᵀY⟩ and ‖XW0‖² = ⟨W0, XᵀX·W0⟩ come from the same two matrices.
    static func closedForm(_ data: some FitRows, rows: [Int], head: [Float]?, rank r: Int, ridge: Double) throws -> ProjectorModel {
        let n = rows.count, d = data.dimension, c = data.classes
        // Two map-reduce rounds over the parts (a corpus's shards): the sums, for the means; then
        // the centred products. Each part's sums are taken on its own thread and added in part
        // order, so one part (a store) computes exactly what a single pass would.
        let parts = data.partitioned(rows)
        let (sumX, sumY) = try Parallel.mapReduce(parts.count, { try data.partSums(parts[$0]) }) { total, part in
            for j in 0..<d { total.x[j] += part.x[j] }
            for j in 0..<c { total.y[j] += part.y[j] }
        }
        let meanX = sumX.map { Float($0 / Double(n)) }, meanY = sumY.map { Float($0 / Double(n)) }
        // G0 = XcᵀXc and XY = XcᵀYc.
        let products = try Parallel.mapReduce(parts.count, { try data.partCentredProducts(parts[$0], meanX: meanX, meanY: meanY) }) { total, part in
            for i in total.xx.indices { total.xx[i] += part.xx[i] }
            for i in total.xy.indices { total.xy[i] += part.xy[i] }
        }
        let g0 = products.xx
        var xy = products.xy

        // The head's scale by least squares; the correction explains XᵀR = XᵀY − s·G0·W0.
        var scale: Float = 0
        if let head {
            var gw = [Float](repeating: 0, count: d * c)
            LinearAlgebra.gemm(g0, head, &gw, m: d, n: c, k: d)
            var num: Double = 0, den: Double = 0
            for i in 0..<(d * c) { num += Double(head[i]) * Double(xy[i]); den += Double(head[i]) * Double(gw[i]) }
            scale = den > 0 ? Float(num / den) : 0
            for i in 0..<(d * c) { xy[i] -= scale * gw[i] }
        }

        var trace: Double = 0
        for j in 0..<d { trace += Double(g0[j * d + j]) }
        let lambda = Float(max(ridge * trace / Double(d), 1e-6))
        var g = g0
        for j in 0..<d { g[j * d + j] += lambda }
        // (XᵀR)ᵀ is C × d row-major, which is XᵀR (d × C) in LAPACK's column-major order.
        var wt = [Float](repeating: 0, count: c * d)
        for i in 0..<d { for j in 0..<c { wt[j * d + i] = xy[i * c + j] } }
        xy = []
        guard LinearAlgebra.choleskySolve(&g, n: d, rhs: &wt, nrhs: c) else {
            throw ProjectorError.singular("XᵀX + λI is not positive definite")
        }
        // wt now holds Wᵀ (C × d row-major), W = ridge solution (d × C).
        guard wt.allSatisfy(\.isFinite) else { throw ProjectorError.nonFinite(step: "ridge solve") }

        // (XW)ᵀ(XW) = Wᵀ G0 W  (C × C).
        var m = [Float](repeating: 0, count: c * d)
        LinearAlgebra.gemm(wt, g0, &m, m: c, n: d, k: d)
        var ff = [Float](repeating: 0, count: c * c)
        LinearAlgebra.gemm(m, wt, &ff, m: c, n: c, k: d, transB: true)
        guard LinearAlgebra.symmetricEigen(&ff, n: c) != nil else { throw ProjectorError.singular("eigendecomposition failed") }
        // Rows C−r … C−1 are the top-r eigenvectors (ascending order): B = their rows, largest first.
        var b = [Float](repeating: 0, count: r * c)
        for k in 0..<r {
            let source = c - 1 - k
            for j in 0..<c { b[k * c + j] = ff[source * c + j] }
        }
        // A = W · Bᵀ  (d × r) = (Wᵀ)ᵀ Bᵀ.
        var a = [Float](repeating: 0, count: d * r)
        LinearAlgebra.gemm(wt, b, &a, m: d, n: r, k: c, transA: true, transB: true)

        // Bias: b = mean(Y) − s·mean(X)·W0 − mean(X)·A·B.
        var bias = meanY
        var ma = [Float](repeating: 0, count: r)
        LinearAlgebra.gemm(meanX, a, &ma, m: 1, n: r, k: d)
        var mab = [Float](repeating: 0, count: c)
        LinearAlgebra.gemm(ma, b, &mab, m: 1, n: c, k: r)
        for j in 0..<c { bias[j] -= mab[j] }
        if let head {
            var mh = [Float](repeating: 0, count: c)
            LinearAlgebra.gemm(meanX, head, &mh, m: 1, n: c, k: d)
            for j in 0..<c { bias[j] -= scale * mh[j] }
        }
        return ProjectorModel(dimension: d, classes: c, rank: r, scale: scale, a: a, b: b, bias: bias, temperature: 1)
    }

    /// The temperature minimising the mean KL on `rows`: golden-section search on log T in
    /// [log 0.1, log 10] (KL in T is unimodal for a fixed set of logits).
    static func fitTemperature(_ model: ProjectorModel, _ data: some FitRows, rows: [Int], head: [Float]?) throws -> Float {
        var candidate = model
        func loss(_ logT: Double) throws -> Double {
            candidate.temperature = Float(exp(logT))
            return try evaluate(candidate, data, rows: rows, head: head).meanKL
        }
        var lo = log(0.1), hi = log(10.0)
        let ratio = (sqrt(5.0) - 1) / 2
        var a = hi - ratio * (hi - lo), b = lo + ratio * (hi - lo)
        var fa = try loss(a), fb = try loss(b)
        for _ in 0..<24 {
            if fa < fb { hi = b; b = a; fb = fa; a = hi - ratio * (hi - lo); fa = try loss(a) }
            else { lo = a; a = b; fa = fb; b = lo + ratio * (hi - lo); fb = try loss(b) }
        }
        let best = Float(exp((lo + hi) / 2))
        // Keep T = 1 unless the search found something better.
        return try loss(log(Double(best))) < loss(0) ? best : 1
    }

    /// Mean and max KL(p ‖ regenerated) and top-1 agreement over `rows`, regenerated in chunks.
    static func evaluate(_ model: ProjectorModel, _ data: some FitRows, rows: [Int], head: [Float]?) throws -> (meanKL: Double, maxKL: Double, top1: Double) {
        let n = rows.count
        // Per part on a thread each, then summed in part order.
        let parts = data.partitioned(rows)
        let partial = try Parallel.map(parts.count) { try data.partEvaluation(model, rows: parts[$0], head: head) }
        let sum = partial.reduce(0.0) { $0 + $1.sum }, worst = partial.reduce(0.0) { max($0, $1.worst) }, agree = partial.reduce(0) { $0 + $1.agree }
        return (sum / Double(max(n, 1)), worst, Double(agree) / Double(max(n, 1)))
    }

    /// A fitted model, its report, and the corrections its bound took (rows of the data fitted).
    struct Outcome {
        var model: ProjectorModel
        var report: ProjectorFitReport
        var corrections: [(row: Int, codec: UInt8, bytes: [UInt8])]
        /// Parameters plus corrections, as a version's `total_bytes` counts them.
        var totalBytes: Int {
            model.parameterBytes + corrections.reduce(0) { $0 + ProjectorCodec.correctionRecordBytes(encoded: $1.bytes.count) }
        }
    }

    /// Fits `data`, then finds the corrections `maxKL` needs (none without a bound).
    static func fitWithCorrections(
        _ data: some FitRows, head: [Float]?, options: ProjectorFitOptions, maxKL: Double?, requireTop1: Bool, progress: ((String, Double) -> Void)?
    ) throws -> Outcome {
        let (model, report, _) = try fit(data, head: head, options: options, progress: progress)
        guard let maxKL else { return Outcome(model: model, report: report, corrections: []) }
        progress?("corrections", 0)
        return Outcome(model: model, report: report, corrections: try corrections(model, data, head: head, maxKL: maxKL, requireTop1: requireTop1))
    }

    /// Fits each of the budget's ranks on a seeded sample of `data` and picks the one whose
    /// parameters plus corrections (counted on other rows, scaled to every row) take the fewest bytes.
    /// When the sample is every row, the winner's fit is returned too (`exact`): it is the fit.
    static func searchRank(
        _ data: some FitRows, budget: RankBudget, head: [Float]?, options: ProjectorFitOptions, maxKL: Double, requireTop1: Bool,
        progress: ((String, Double) -> Void)?
    ) throws -> (rank: Int, search: RankSearch, exact: Outcome?) {
        guard !budget.ranks.isEmpty, budget.bytes > 0, budget.sampleRows >= 1 else {
            throw ProjectorError.invalidOption("a rank search needs at least one rank, a positive budget and a positive sample size")
        }
        let limit = min(data.dimension, data.classes) - 1
        if let bad = budget.ranks.first(where: { $0 < 1 || $0 > limit }) { throw ProjectorError.invalidRank(rank: bad, limit: limit) }
        // The candidates are fitted on a seeded sample and their corrections counted on other
        // rows (as many, when there are): on the rows it fitted, a small sample's fit looks
        // better than the fit of every row will, and the more so the higher the rank.
        var rng = SplitMix64(seed: options.seed ^ 0x7261_6e6b)   // "rank": not the split's or the steps' stream
        var order = Array(0..<data.count)
        var fitted = order, probed = order
        if data.count > budget.sampleRows {
            // Fewer than two samples' worth of rows are split in half, so the probe is never a handful.
            let fitCount = min(budget.sampleRows, data.count / 2)
            order.shuffle(using: &rng)
            fitted = Array(order.prefix(fitCount)).sorted()
            probed = Array(order.dropFirst(fitCount).prefix(fitCount)).sorted()
        }
        let sample = SampledFitRows(base: data, rows: fitted), probe = SampledFitRows(base: data, rows: probed)
        let scale = Double(data.count) / Double(probe.count)
        var candidates: [RankCandidate] = [], best: (index: Int, outcome: Outcome)? = nil
        for (i, rank) in budget.ranks.enumerated() {
            var candidate = options
            candidate.rank = rank
            progress?("rank search: rank \(rank)", Double(i) / Double(budget.ranks.count))
            var outcome = try fitWithCorrections(sample, head: head, options: candidate, maxKL: nil, requireTop1: requireTop1, progress: nil)
            outcome.corrections = try corrections(outcome.model, probe, head: head, maxKL: maxKL, requireTop1: requireTop1)
            let probeBytes = outcome.totalBytes - outcome.model.parameterBytes
            candidates.append(RankCandidate(rank: rank, parameterBytes: outcome.model.parameterBytes, probeCorrections: outcome.corrections.count,
                                            correctionBytes: Int((Double(probeBytes) * scale).rounded())))
            if best == nil || candidates[i].totalBytes < candidates[best!.index].totalBytes { best = (i, outcome) }
        }
        var search = RankSearch(budgetBytes: budget.bytes, sampleRows: sample.count, probeRows: probe.count, candidates: candidates)
        if sample.count == data.count { search.candidates[best!.index].measuredBytes = best!.outcome.totalBytes }
        return (search.candidates[best!.index].rank, search, sample.count == data.count ? best!.outcome : nil)
    }

    /// Fits every row at the ranks a sampled search ranked, smallest estimate first, until one
    /// keeps within the budget: estimates from a sample can rank candidates wrongly at full
    /// scale (measured at 1.28M rows: rank 128 estimated within 4 MB, measured 4.67 MB; rank 256
    /// measured 3.90 MB). Only candidates estimated within ``RankBudget/estimateSlack`` × the
    /// budget are tried; each fit's measured bytes go into `search`.
    ///
    /// - Throws: ``ProjectorError/overBudget(rank:bytes:budget:estimated:)`` when none keeps within it.
    static func fitWithinBudget(
        _ data: some FitRows, search: inout RankSearch, head: [Float]?, options: ProjectorFitOptions, maxKL: Double, requireTop1: Bool,
        progress: ((String, Double) -> Void)?
    ) throws -> (rank: Int, outcome: Outcome) {
        let order = search.candidates.indices.sorted { search.candidates[$0].totalBytes < search.candidates[$1].totalBytes }
        let tried = order.filter { Double(search.candidates[$0].totalBytes) <= RankBudget.estimateSlack * Double(search.budgetBytes) }
        var smallest: (rank: Int, bytes: Int)? = nil
        for index in tried {
            var candidate = options
            candidate.rank = search.candidates[index].rank
            let outcome = try fitWithCorrections(data, head: head, options: candidate, maxKL: maxKL, requireTop1: requireTop1, progress: progress)
            search.candidates[index].measuredBytes = outcome.totalBytes
            if outcome.totalBytes <= search.budgetBytes { return (candidate.rank, outcome) }
            if smallest == nil || outcome.totalBytes < smallest!.bytes { smallest = (candidate.rank, outcome.totalBytes) }
        }
        let best = smallest ?? order.first.map { (search.candidates[$0].rank, search.candidates[$0].totalBytes) }!
        throw ProjectorError.overBudget(rank: best.rank, bytes: best.bytes, budget: search.budgetBytes, estimated: smallest == nil)
    }

    /// Regenerates `rows` of `data` a chunk at a time and passes each row's position in `rows`,
    /// its teacher distribution and its regenerated one (both borrowed) to `body`.
    static func forEachRegenerated(
        _ model: ProjectorModel, _ data: some FitRows, rows: [Int], head: [Float]?,
        _ body: (Int, UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) -> Void
    ) throws {
        let c = model.classes, d = model.dimension, n = rows.count
        let chunk = min(chunkRows, max(n, 1))
        let weights = head.map { model.combinedWeights(head: $0) }
        var xb = [Float](repeating: 0, count: chunk * d), pb = [Float](repeating: 0, count: chunk * c), q = [Float](repeating: 0, count: chunk * c)
        for start in stride(from: 0, to: n, by: chunk) {
            let slice = rows[start..<min(start + chunk, n)]
            try xb.withUnsafeMutableBufferPointer { xv in try pb.withUnsafeMutableBufferPointer { try data.load(slice, embeddings: xv.baseAddress!, teacher: $0.baseAddress!) } }
            xb.withUnsafeBufferPointer { xv in q.withUnsafeMutableBufferPointer { model.regenerate(xv.baseAddress!, rows: slice.count, weights: weights, into: $0.baseAddress!) } }
            pb.withUnsafeBufferPointer { pv in
                q.withUnsafeBufferPointer { qv in
                    for i in 0..<slice.count {
                        body(start + i, UnsafeBufferPointer(rebasing: pv[(i * c)..<((i + 1) * c)]), UnsafeBufferPointer(rebasing: qv[(i * c)..<((i + 1) * c)]))
                    }
                }
            }
        }
    }

    /// The rows of `data` whose regenerated label breaks the bound (KL above `maxKL`, or — with
    /// `requireTop1` — another top-1 class), each with its teacher label encoded in the cheapest
    /// correction codec that restores the bound; regenerated chunk by chunk.
    static func corrections(
        _ model: ProjectorModel, _ data: some FitRows, head: [Float]?, maxKL: Double, requireTop1: Bool
    ) throws -> [(row: Int, codec: UInt8, bytes: [UInt8])] {
        // Per part on a thread each; the rows found come back in row order.
        let parts = data.partitioned(Array(0..<data.count))
        let found = try Parallel.map(parts.count) { try data.partCorrections(model, rows: parts[$0], head: head, maxKL: maxKL, requireTop1: requireTop1) }
        let rows = found.count == 1 ? found[0] : found.joined().sorted { $0.row < $1.row }
        return rows.map { ($0.row, $0.codec, $0.bytes) }
    }

    /// Minibatch Adam on the cross-entropy between the teacher and the projector: a fixed number
    /// of epochs, or (the default) up to `maxSteps` steps with early stopping on a validation
    /// split of `rows`, returning the best model it checked.
    static func refine(
        _ start: ProjectorModel, _ data: some FitRows, rows allRows: [Int], head: [Float]?, options: ProjectorFitOptions,
        rng: inout SplitMix64, progress: ((String, Double) -> Void)?
    ) throws -> (model: ProjectorModel, steps: Int, stopReason: String) {
        // The validation split: a seeded 5% (at most 10,000 rows) of the fitted rows, kept out
        // of the steps; none for fixed epochs or fewer than 20 rows.
        var rows = allRows, validation: [Int] = []
        if options.epochs == nil, allRows.count >= 20 {
            var shuffled = allRows
            shuffled.shuffle(using: &rng)
            let count = min(max(allRows.count / 20, 1), 10_000)
            validation = Array(shuffled.prefix(count)).sorted()
            rows = Array(shuffled.dropFirst(count)).sorted()
        }
        let n = rows.count
        let stepsPerEpoch = (n + min(options.batchSize, n) - 1) / min(options.batchSize, n)
        let budget = options.epochs.map { $0 * stepsPerEpoch } ?? options.maxSteps
        // Checks once per epoch, but not more often than every 25 steps (a small corpus takes one
        // step per epoch, and Adam's loss is noisy step to step) nor less often than every 250.
        let interval = min(max(stepsPerEpoch, 25), 250)
        var best = (model: start, kl: validation.isEmpty ? Double.infinity : try evaluate(start, data, rows: validation, head: head).meanKL)
        var sinceBest = 0
        var model = start
        let d = model.dimension, c = model.classes, r = model.rank
        let batch = min(options.batchSize, n)
        let lr = Float(options.learningRate), beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8
        var mA = [Float](repeating: 0, count: d * r), vA = mA
        var mB = [Float](repeating: 0, count: r * c), vB = mB
        var mb = [Float](repeating: 0, count: c), vb = mb
        var ms: Float = 0, vs: Float = 0
        var step = 0
        var xb = [Float](repeating: 0, count: batch * d), pb = [Float](repeating: 0, count: batch * c)
        var hidden = [Float](repeating: 0, count: batch * r), z = [Float](repeating: 0, count: batch * c)
        var xw0 = [Float](repeating: 0, count: head == nil ? 0 : batch * c)
        var gA = [Float](repeating: 0, count: d * r), gB = [Float](repeating: 0, count: r * c)
        var gbT = [Float](repeating: 0, count: batch * r)

        func adam(_ w: inout [Float], _ g: [Float], _ m: inout [Float], _ v: inout [Float], _ t: Int) {
            let c1 = 1 - pow(beta1, Float(t)), c2 = 1 - pow(beta2, Float(t))
            for i in 0..<w.count {
                m[i] = beta1 * m[i] + (1 - beta1) * g[i]
                v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
                w[i] -= lr * (m[i] / c1) / ((v[i] / c2).squareRoot() + epsilon)
            }
        }

        var epoch = 0
        while step < budget {
            var order = rows
            order.shuffle(using: &rng)
            var start = 0
            while start < n, step < budget {
                let count = min(batch, n - start)
                let slice = order[start..<(start + count)]
                try xb.withUnsafeMutableBufferPointer { xv in try pb.withUnsafeMutableBufferPointer { try data.load(slice, embeddings: xv.baseAddress!, teacher: $0.baseAddress!) } }
                // Forward: z = s·x·W0 + (x·A)·B + b.
                LinearAlgebra.gemm(xb, model.a, &hidden, m: count, n: r, k: d)
                LinearAlgebra.gemm(hidden, model.b, &z, m: count, n: c, k: r)
                if let head {
                    LinearAlgebra.gemm(xb, head, &xw0, m: count, n: c, k: d)
                    for i in 0..<(count * c) { z[i] += model.scale * xw0[i] }
                }
                for i in 0..<count { for j in 0..<c { z[i * c + j] += model.bias[j] } }
                z.withUnsafeMutableBufferPointer { LinearAlgebra.softmaxRows($0.baseAddress!, rows: count, columns: c) }
                // dL/dz = (q − p) / count.
                let inverse = 1 / Float(count)
                var gb = [Float](repeating: 0, count: c)
                var gs: Float = 0
                for i in 0..<count {
                    for j in 0..<c {
                        let gz = (z[i * c + j] - pb[i * c + j]) * inverse
                        z[i * c + j] = gz
                        gb[j] += gz
                        if head != nil { gs += gz * xw0[i * c + j] }
                    }
                }
                // dB = (xA)ᵀ · dz; dA = xᵀ · (dz · Bᵀ).
                LinearAlgebra.gemm(hidden, z, &gB, m: r, n: c, k: count, transA: true)
                LinearAlgebra.gemm(z, model.b, &gbT, m: count, n: r, k: c, transB: true)
                LinearAlgebra.gemm(xb, gbT, &gA, m: d, n: r, k: count, transA: true)
                guard gA.allSatisfy(\.isFinite), gB.allSatisfy(\.isFinite), gs.isFinite else {
                    throw ProjectorError.nonFinite(step: "refinement epoch \(epoch + 1), step \(step + 1)")
                }
                step += 1
                adam(&model.a, gA, &mA, &vA, step)
                adam(&model.b, gB, &mB, &vB, step)
                adam(&model.bias, gb, &mb, &vb, step)
                if head != nil {
                    var sv = [model.scale], msv = [ms], vsv = [vs]
                    adam(&sv, [gs], &msv, &vsv, step)
                    model.scale = sv[0]; ms = msv[0]; vs = vsv[0]
                }
                start += count
                // Early stopping: keep the best model the validation split has seen.
                if !validation.isEmpty, step % interval == 0 || step == budget {
                    let kl = try evaluate(model, data, rows: validation, head: head).meanKL
                    if kl < best.kl * (1 - 1e-4) { best = (model, kl); sinceBest = 0 } else { sinceBest += 1 }
                    if sinceBest >= options.patience { return (best.model, step, "patience") }
                }
            }
            epoch += 1
            progress?("refinement step \(step)/\(budget)", Double(step) / Double(max(budget, 1)))
        }
        if validation.isEmpty { return (model, step, options.epochs == nil ? "max_steps" : "epochs") }
        return (best.model, step, "max_steps")
    }
}

/// The sums the closed form needs from one part's rows, read a chunk at a time.
enum ClosedFormSums {
    /// Loads a chunk: its embeddings into `xb` and its teacher's log-probabilities, centred per
    /// row (softmax ignores a per-row constant), into `yb`.
    static func loadChunk(_ data: some FitRows, _ slice: ArraySlice<Int>, _ xb: inout [Float], _ yb: inout [Float]) throws {
        let c = data.classes
        try xb.withUnsafeMutableBufferPointer { xv in try yb.withUnsafeMutableBufferPointer { try data.load(slice, embeddings: xv.baseAddress!, teacher: $0.baseAddress!) } }
        for i in 0..<slice.count {
            var mean: Float = 0
            for j in 0..<c { let v = log(max(yb[i * c + j], 1e-7)); yb[i * c + j] = v; mean += v }
            mean /= Float(c)
            for j in 0..<c { yb[i * c + j] -= mean }
        }
    }

    /// Σx and Σy (the centred log-probabilities) over `rows`.
    static func sums(_ data: some FitRows, rows: [Int]) throws -> (x: [Double], y: [Double]) {
        let n = rows.count, d = data.dimension, c = data.classes
        let chunk = min(ProjectorFitter.chunkRows, n)
        var xb = [Float](repeating: 0, count: chunk * d), yb = [Float](repeating: 0, count: chunk * c)
        var sumX = [Double](repeating: 0, count: d), sumY = [Double](repeating: 0, count: c)
        for start in stride(from: 0, to: n, by: chunk) {
            let slice = rows[start..<min(start + chunk, n)]
            try loadChunk(data, slice, &xb, &yb)
            for i in 0..<slice.count {
                for j in 0..<d { sumX[j] += Double(xb[i * d + j]) }
                for j in 0..<c { sumY[j] += Double(yb[i * c + j]) }
            }
        }
        return (sumX, sumY)
    }

    /// XcᵀXc (d × d) and XcᵀYc (d × C) over `rows`, centred by the means of every part's rows.
    static func centredProducts(_ data: some FitRows, rows: [Int], meanX: [Float], meanY: [Float]) throws -> (xx: [Float], xy: [Float]) {
        let n = rows.count, d = data.dimension, c = data.classes
        let chunk = min(ProjectorFitter.chunkRows, n)
        var xb = [Float](repeating: 0, count: chunk * d), yb = [Float](repeating: 0, count: chunk * c)
        var g0 = [Float](repeating: 0, count: d * d), xy = [Float](repeating: 0, count: d * c)
        for start in stride(from: 0, to: n, by: chunk) {
            let slice = rows[start..<min(start + chunk, n)]
            try loadChunk(data, slice, &xb, &yb)
            let m = slice.count
            for i in 0..<m {
                for j in 0..<d { xb[i * d + j] -= meanX[j] }
                for j in 0..<c { yb[i * c + j] -= meanY[j] }
            }
            LinearAlgebra.gemm(xb, xb, &g0, m: d, n: d, k: m, transA: true, beta: 1)
            LinearAlgebra.gemm(xb, yb, &xy, m: d, n: c, k: m, transA: true, beta: 1)
        }
        return (g0, xy)
    }
}
