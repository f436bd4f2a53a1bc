import Foundation

/// How far two label sets agree over the samples both label (issue 13; `labels agree`).
public struct PairAgreement: Sendable, Equatable {
    /// The two sources, as `NAME@VERSION` (a projector's version for a projector).
    public var a: String, b: String
    /// Samples both label with a top-1 class, visible under the clearance (and matching the filter).
    public var count: Int
    /// The share of them whose top-1 classes are equal.
    public var agreement: Double
    /// Cohen's κ of the top-1 classes: (pₒ − pₑ) / (1 − pₑ), pₑ from the two marginals; nil when
    /// pₑ = 1 (both put every sample in one class: κ is undefined).
    public var kappa: Double?
    /// Mean Jensen–Shannon divergence of the two distributions, in nats (hard labels one-hot).
    public var jsDivergence: Double
    /// C × C counts: row A's top-1 class, column B's.
    public var confusion: [[Int]]
}

/// The agreement of several label sets: every pair, and Fleiss' κ when there are three or more.
public struct Agreement: Sendable, Equatable {
    /// One entry per pair, in the order the sources were given (a with each later b).
    public var pairs: [PairAgreement]
    /// The sources (`NAME@VERSION`), for ``fleissKappa``.
    public var sets: [String]
    /// Samples every source labels with a top-1 class (three or more sources; else 0).
    public var fleissCount: Int
    /// Fleiss' κ over those samples, each source one rater of the top-1 class; nil for fewer than
    /// three sources, or when it is undefined (every rating in one class).
    public var fleissKappa: Double?
}

/// A stream of samples with their labels from a list of sources, in id order: it calls its
/// argument once per sample (a store's ``Transaction/query(_:order:descending:limit:offset:labels:_:)``,
/// or a corpus's shards merged by ``Corpus/forEachLabelledSample(_:labels:clearance:_:)``).
typealias LabelledRows = ((UInt64, [Label?]) throws -> Void) throws -> Void

/// Errors of comparing label sets.
public enum AgreementError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than two sources, or one named twice.
    case sources(String)
    /// Two sources label no common sample the clearance sees.
    case noCommonSample(String, String)

    public var description: String {
        switch self {
        case .sources(let why): why
        case .noCommonSample(let a, let b): "\(a) and \(b) label no common sample under this clearance (and filter)"
        }
    }
}

extension Transaction {
    /// Compares label sets (or projectors, regenerated on read) over the samples visible under
    /// the clearance and matching `filter`: per pair, top-1 agreement, Cohen's κ, mean JS
    /// divergence and the confusion of top-1 classes; for three or more, Fleiss' κ. Every set
    /// shares the store's class vocabulary, so classes compare by index.
    ///
    /// - Throws: ``AgreementError``, ``LabelError``, ``QueryError``.
    public func agreement(of references: [LabelSetReference], where filter: QueryExpression? = nil) throws -> Agreement {
        let names = try distinctSources(references, needing: "compare at least two label sets")
        return try Self.measureAgreement(names: names, classes: store.schema.classes.count) { body in _ = try query(filter, labels: references, body) }
    }

    /// The agreement of the sources `names`, from each sample's labels of them in id order (one
    /// store's query, or a corpus's shards merged): sums over the samples, so the same rows in
    /// the same order give the same figures however they are stored.
    static func measureAgreement(names: [String], classes c: Int, rows: LabelledRows) throws -> Agreement {
        guard c <= Self.maximumConfusionClasses else {
            throw AgreementError.sources("agreement reports a \(c) × \(c) confusion per pair; at most \(Self.maximumConfusionClasses) classes are supported")
        }
        let k = names.count
        var pairs = [(count: Int, js: Double, confusion: [Int])](repeating: (0, 0, [Int](repeating: 0, count: c * c)), count: k * (k - 1) / 2)
        var fleissCounts = [Int](repeating: 0, count: c)   // Σ over samples of n_j, and Σ n_ij²
        var fleissSquares = 0, fleissCount = 0
        try rows { _, labels in
            let tops = labels.map { $0?.top1?.classIndex }
            let distributions = labels.map { $0?.distribution(classCount: c) }
            var pair = 0
            for i in 0..<k {
                for j in (i + 1)..<k {
                    defer { pair += 1 }
                    guard let ti = tops[i], let tj = tops[j], let p = distributions[i], let q = distributions[j] else { continue }
                    pairs[pair].count += 1
                    pairs[pair].js += jensenShannon(p, q)
                    pairs[pair].confusion[ti * c + tj] += 1
                }
            }
            if k >= 3, tops.allSatisfy({ $0 != nil }) {
                fleissCount += 1
                var perClass: [Int: Int] = [:]
                for t in tops { perClass[t!, default: 0] += 1 }
                for (cls, n) in perClass { fleissCounts[cls] += n; fleissSquares += n * n }
            }
        }
        var result: [PairAgreement] = []
        var pair = 0
        for i in 0..<k {
            for j in (i + 1)..<k {
                defer { pair += 1 }
                let (count, js, confusion) = pairs[pair]
                guard count > 0 else { throw AgreementError.noCommonSample(names[i], names[j]) }
                result.append(Self.pairAgreement(names[i], names[j], count: count, js: js, confusion: confusion, classes: c))
            }
        }
        return Agreement(pairs: result, sets: names, fleissCount: fleissCount,
                         fleissKappa: k >= 3 ? Self.fleissKappa(subjects: fleissCount, raters: k, perClass: fleissCounts, squares: fleissSquares) : nil)
    }

    /// The most classes `agreement` accepts: each pair keeps a C × C confusion.
    static let maximumConfusionClasses = 4096

    /// The `NAME@VERSION`s of two or more sources, none twice (`needing` says why two).
    func distinctSources(_ references: [LabelSetReference], needing: String) throws -> [String] {
        guard references.count >= 2 else { throw AgreementError.sources(needing) }
        let names = try references.map { try sourceName($0) }
        if let twice = names.enumerated().first(where: { names[..<$0.offset].contains($0.element) }) {
            throw AgreementError.sources("\(twice.element) is named twice")
        }
        return names
    }

    /// `NAME@VERSION` of a source: the label set version, or the projector version, it resolves to.
    func sourceName(_ reference: LabelSetReference) throws -> String { try labelSource(reference, for: "agreement").name }

    static func pairAgreement(_ a: String, _ b: String, count: Int, js: Double, confusion: [Int], classes c: Int) -> PairAgreement {
        let n = Double(count)
        var agree = 0
        var rows = [Int](repeating: 0, count: c), columns = [Int](repeating: 0, count: c)
        for i in 0..<c {
            agree += confusion[i * c + i]
            for j in 0..<c { rows[i] += confusion[i * c + j]; columns[j] += confusion[i * c + j] }
        }
        let po = Double(agree) / n
        let pe = (0..<c).reduce(0.0) { $0 + Double(rows[$1]) * Double(columns[$1]) } / (n * n)
        return PairAgreement(a: a, b: b, count: count, agreement: po, kappa: pe < 1 ? (po - pe) / (1 - pe) : nil, jsDivergence: js / n,
                             confusion: (0..<c).map { Array(confusion[($0 * c)..<(($0 + 1) * c)]) })
    }

    /// Fleiss' κ from Σᵢ nᵢⱼ per class and Σᵢⱼ nᵢⱼ² over `subjects` samples of `raters` ratings each.
    static func fleissKappa(subjects: Int, raters: Int, perClass: [Int], squares: Int) -> Double? {
        guard subjects > 0 else { return nil }
        let N = Double(subjects), n = Double(raters)
        let pBar = (Double(squares) - N * n) / (N * n * (n - 1))
        let pe = perClass.reduce(0.0) { $0 + pow(Double($1) / (N * n), 2) }
        return pe < 1 ? (pBar - pe) / (1 - pe) : nil
    }
}

/// Jensen–Shannon divergence of two distributions, in nats: ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q) / 2.
func jensenShannon(_ p: [Float], _ q: [Float]) -> Double {
    var sum = 0.0
    // Decoded compact labels spread their leftover evenly: runs of equal (p, q) pairs share one
    // term, which saves two logarithms a class on a 1,000-class top-5 row.
    var last: (p: Float, q: Float, term: Double) = (.nan, .nan, 0)
    for i in p.indices {
        if p[i] != last.p || q[i] != last.q {
            let pi = Double(p[i]), qi = Double(q[i]), m = (pi + qi) / 2
            last = (p[i], q[i], (pi > 0 ? pi * log(pi / m) : 0) + (qi > 0 ? qi * log(qi / m) : 0))
        }
        sum += last.term
    }
    return max(sum / 2, 0)
}
