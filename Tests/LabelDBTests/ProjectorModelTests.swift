import Foundation
import Testing
@testable import LabelDB

/// A synthetic problem: embeddings and a teacher softmax(s·X·W0 + X·A·B + b).
struct ProjectorProblem {
    let n: Int, d: Int, c: Int
    var x: [Float]
    var p: [Float]
    var head: [Float]

    init(n: Int = 1500, d: Int = 16, c: Int = 12, rank: Int = 3, headScale: Float = 0, seed: UInt64 = 1) {
        self.n = n; self.d = d; self.c = c
        var rng = SplitMix64(seed: seed)
        func g() -> Float { Float.random(in: -1...1, using: &rng) }
        x = (0..<(n * d)).map { _ in g() }
        head = (0..<(d * c)).map { _ in g() }
        let a = (0..<(d * rank)).map { _ in g() }
        let b = (0..<(rank * c)).map { _ in g() }
        let bias = (0..<c).map { _ in g() * 0.5 }
        let truth = ProjectorModel(dimension: d, classes: c, rank: rank, scale: headScale, a: a, b: b, bias: bias, temperature: 1)
        p = truth.regenerate(x, rows: n, head: headScale == 0 ? nil : head)
    }
}

@Suite("Projector model")
struct ProjectorModelTests {
    @Test("a teacher that is exactly low-rank-linear in the embeddings is recovered (KL ≈ 0)")
    func recoversLowRankTeacher() throws {
        let problem = ProjectorProblem()
        var options = ProjectorFitOptions(rank: 3)
        options.epochs = 0
        options.ridge = 1e-7
        let (_, report, _) = try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d,
                                                     classes: problem.c, head: nil, options: options)
        #expect(report.trainMeanKL < 1e-4, "mean KL \(report.trainMeanKL)")
        #expect(report.trainTop1 > 0.99)
    }

    @Test("regeneration equals a straightforward reference computation within 1e-5")
    func regenerationMatchesReference() throws {
        let problem = ProjectorProblem(n: 300, headScale: 0.7)
        var options = ProjectorFitOptions(rank: 2)
        options.epochs = 2
        let (model, _, _) = try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d,
                                                    classes: problem.c, head: problem.head, options: options)
        let fast = model.regenerate(problem.x, rows: problem.n, head: problem.head)
        let (d, c, r) = (problem.d, problem.c, model.rank)
        for i in 0..<problem.n {
            var z = [Double](repeating: 0, count: c)
            for j in 0..<c {
                var v = Double(model.bias[j])
                for k in 0..<d { v += Double(model.scale) * Double(problem.x[i * d + k]) * Double(problem.head[k * c + j]) }
                for t in 0..<r {
                    var xa = 0.0
                    for k in 0..<d { xa += Double(problem.x[i * d + k]) * Double(model.a[k * r + t]) }
                    v += xa * Double(model.b[t * c + j])
                }
                z[j] = v / Double(model.temperature)
            }
            let m = z.max()!
            let e = z.map { exp($0 - m) }
            let s = e.reduce(0, +)
            for j in 0..<c { #expect(abs(Double(fast[i * c + j]) - e[j] / s) < 1e-5) }
        }
    }

    @Test("with an informative base head, the same rank fits better than without it")
    func headHelps() throws {
        let problem = ProjectorProblem(rank: 2, headScale: 1.5, seed: 4)
        var options = ProjectorFitOptions(rank: 2)
        options.epochs = 3
        let with = try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d, classes: problem.c, head: problem.head, options: options)
        let without = try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d, classes: problem.c, head: nil, options: options)
        #expect(with.report.trainMeanKL < without.report.trainMeanKL / 5, "\(with.report.trainMeanKL) vs \(without.report.trainMeanKL)")
    }

    @Test("fitting is deterministic for a fixed seed, and the split follows the seed")
    func deterministic() throws {
        let problem = ProjectorProblem(n: 800, seed: 9)
        var options = ProjectorFitOptions(rank: 3)
        options.epochs = 2
        options.holdout = 0.25
        options.seed = 42
        let first = try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d, classes: problem.c, head: nil, options: options)
        let second = try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d, classes: problem.c, head: nil, options: options)
        #expect(first.model == second.model)
        #expect(first.trainRows == second.trainRows)
        #expect(first.report.holdoutRows == 200)
        options.seed = 43
        let third = try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d, classes: problem.c, head: nil, options: options)
        #expect(third.trainRows != first.trainRows)
    }

    @Test("rank out of range is refused")
    func badRank() {
        let problem = ProjectorProblem(n: 50)
        for rank in [0, 12, 16, 100] {
            #expect(throws: ProjectorError.invalidRank(rank: rank, limit: 11)) {
                _ = try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d, classes: problem.c, head: nil, options: ProjectorFitOptions(rank: rank))
            }
        }
    }
}

@Suite("Projector temperature")
struct ProjectorTemperatureTests {
    @Test("the temperature search recovers the T a teacher was generated with")
    func recoversTemperature() throws {
        var rng = SplitMix64(seed: 17)
        let (n, d, c, r) = (400, 8, 6, 2)
        let x = (0..<(n * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        var truth = ProjectorModel(dimension: d, classes: c, rank: r, scale: 0,
                                   a: (0..<(d * r)).map { _ in Float.random(in: -2...2, using: &rng) },
                                   b: (0..<(r * c)).map { _ in Float.random(in: -2...2, using: &rng) },
                                   bias: Array(repeating: 0, count: c), temperature: 2.5)
        let teacher = truth.regenerate(x, rows: n, head: nil)
        truth.temperature = 1
        let found = try ProjectorFitter.fitTemperature(truth, MatrixFitRows(x: x, p: teacher, count: n, dimension: d, classes: c), rows: Array(0..<n), head: nil)
        #expect(abs(found - 2.5) < 0.05, "found T = \(found)")
    }
}

@Suite("Projector refinement budget")
struct ProjectorRefinementBudgetTests {
    /// A teacher of rank 6 over a head, fitted at rank 3: refinement has work to do. (Small: a
    /// debug build runs the loops around the GEMMs 10–100× slower; the benchmark `convergence`
    /// checks 1k and 10k rows of a larger problem in release.)
    let problem = ProjectorProblem(n: 400, d: 16, c: 10, rank: 6, headScale: 0.7, seed: 5)

    func fit(_ configure: (inout ProjectorFitOptions) -> Void) throws -> ProjectorFitReport {
        var options = ProjectorFitOptions(rank: 3)
        configure(&options)
        return try ProjectorFitter.fit(embeddings: problem.x, teacher: problem.p, rows: problem.n, dimension: problem.d,
                                       classes: problem.c, head: problem.head, options: options).report
    }

    @Test("issue 12 §4: a fit with the default options lands within 10% of a 1,000-epoch fit's mean KL, and says why it stopped")
    func defaultsConverge() throws {
        let defaults = try fit { _ in }
        let long = try fit { $0.epochs = 1_000 }
        #expect(defaults.trainMeanKL <= 1.10 * long.trainMeanKL, "default \(defaults.trainMeanKL), 1,000 epochs \(long.trainMeanKL)")
        #expect(defaults.trainMeanKL < defaults.closedFormMeanKL)
        #expect(["patience", "max_steps"].contains(defaults.stopReason ?? ""))
        #expect(long.stopReason == "epochs" && long.steps == 1_000)
    }

    @Test("the step budget and the patience stop the refinement; fixed epochs run them all")
    func budgetsStop() throws {
        let capped = try fit { $0.maxSteps = 300; $0.patience = 1_000 }
        #expect(capped.steps == 300 && capped.stopReason == "max_steps")
        // Patience 1 stops at the first check that does not improve ("no_refinement" when none
        // ever beat the closed form).
        let impatient = try fit { $0.maxSteps = 100_000; $0.patience = 1 }
        #expect(["patience", "no_refinement"].contains(impatient.stopReason ?? "") && (impatient.steps ?? .max) < 100_000)
        let none = try fit { $0.maxSteps = 0 }
        #expect(none.steps == 0 && none.stopReason == "no_refinement")
        #expect(throws: ProjectorError.self) { _ = try fit { $0.patience = 0 } }
    }
}
