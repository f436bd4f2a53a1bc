import Foundation

/// The counting half of confident learning (Northcutt et al., 2021), step for step as
/// cleanlab 2.9.0's `count.compute_confident_joint` and `calibrate_confident_joint`, so that
/// `labels issues` flags what `find_label_issues` flags. Matrices are flat, row-major, C × C.
struct ConfidentLearning {
    /// cleanlab's threshold for a class no sample is given: no probability reaches it.
    static let unreachable = 2.0
    /// cleanlab's `FLOATING_POINT_COMPARISON`.
    static let epsilon = 1e-6

    let classes: Int
    private(set) var examined = 0
    private(set) var labelCounts: [Int]
    /// Per class, the self-confidences of the samples given it, in id order (their mean must
    /// be numpy's, summed pairwise, for thresholds to equal cleanlab's to the last bit).
    private var selfConfidences: [[Double]]
    /// Given class × estimated true class.
    private var joint: [Int]

    init(classes: Int) {
        self.classes = classes
        labelCounts = [Int](repeating: 0, count: classes)
        selfConfidences = [[Double]](repeating: [], count: classes)
        joint = [Int](repeating: 0, count: classes * classes)
    }

    /// Pass 1: the sums behind each class's threshold.
    mutating func countSelfConfidence(given: Int, probs: [Float]) {
        examined += 1
        labelCounts[given] += 1
        selfConfidences[given].append(Double(probs[given]))
    }

    /// Per class, the mean self-confidence of the samples given it (at least 2·epsilon).
    func thresholds() -> [Double] {
        (0..<classes).map { k in
            labelCounts[k] == 0 ? Self.unreachable : max(Self.pairwiseSum(selfConfidences[k][...]) / Double(labelCounts[k]), 2 * Self.epsilon)
        }
    }

    /// Pass 2: a sample counts towards (given, j) when j is the only class whose probability
    /// reaches its threshold, or the argmax when several do; when none does, it does not count.
    mutating func countJoint(given: Int, probs: [Float], thresholds: [Double]) {
        var confident = 0, firstConfident = 0
        for (j, p) in probs.enumerated() where Double(p) >= thresholds[j] - Self.epsilon {
            if confident == 0 { firstConfident = j }
            confident += 1
        }
        guard confident > 0 else { return }
        let trueClass = confident > 1 ? argmax(probs) : firstConfident
        joint[given * classes + trueClass] += 1
    }

    /// The joint with every diagonal entry at least 1, rescaled so that row k sums to the
    /// number of samples given k and the whole to ``examined``, rounded row by row preserving
    /// the row totals.
    func calibratedJoint() -> [Int] {
        let c = classes
        var cj = joint
        for k in 0..<c { cj[k * c + k] = max(cj[k * c + k], 1) }
        var calibrated = [Double](repeating: 0, count: c * c)
        for g in 0..<c {
            let rowSum = max(Double(cj[(g * c)..<(g * c + c)].reduce(0, +)), 1e-100)
            for t in 0..<c { calibrated[g * c + t] = Double(cj[g * c + t]) / rowSum * Double(labelCounts[g]) }
        }
        // numpy sums cleanlab's transposed-twice matrix in its memory order: column-major.
        let columnMajor = (0..<(c * c)).map { calibrated[($0 % c) * c + $0 / c] }
        let total = max(Self.pairwiseSum(columnMajor[...]), 1e-100)
        for i in calibrated.indices { calibrated[i] = calibrated[i] / total * Double(examined) }
        return (0..<c).flatMap { Self.roundPreservingSum(Array(calibrated[($0 * c)..<($0 * c + c)])) }
    }

    /// cleanlab's `round_preserving_sum`: round half to even, then move the difference from the
    /// rounded total onto the entries whose rounding lost (or gained) the most.
    static func roundPreservingSum(_ values: [Double]) -> [Int] {
        var ints = values.map { $0.rounded(.toNearestOrEven) }
        let target = pairwiseSum(values[...]).rounded(.toNearestOrEven)
        var sum = ints.reduce(0, +).rounded(.toNearestOrEven)
        while abs(sum - target) > epsilon {
            let difference = (target - sum).rounded(.toNearestOrEven)
            let step = difference < 0 ? -1.0 : 1.0
            // A stable ascending argsort of the rounding error, read from the end when adding.
            var order = values.indices.sorted { (values[$0] - ints[$0], $0) < (values[$1] - ints[$1], $1) }
            if step > 0 { order.reverse() }
            for i in order.prefix(min(Int(abs(difference)), values.count)) { ints[i] += step }
            sum = ints.reduce(0, +).rounded(.toNearestOrEven)
        }
        return ints.map { Int($0) }
    }

    /// numpy's sum of doubles: pairwise in blocks of 128 with eight accumulators, so that
    /// rounding is numpy's (a total of 1279.9999999999998 instead of 1280 moves a calibrated
    /// count across a rounding boundary).
    static func pairwiseSum(_ a: ArraySlice<Double>) -> Double {
        let n = a.count, start = a.startIndex
        if n < 8 { return a.reduce(0.0, +) }
        if n <= 128 {
            var r = Array(a[start..<(start + 8)])
            var i = 8
            while i < n - n % 8 {
                for j in 0..<8 { r[j] += a[start + i + j] }
                i += 8
            }
            var sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
            while i < n { sum += a[start + i]; i += 1 }
            return sum
        }
        let half = n / 2 - (n / 2) % 8
        return pairwiseSum(a[start..<(start + half)]) + pairwiseSum(a[(start + half)...])
    }

    /// `_keep_at_least_n_per_class` with n = 1 and `frac_noise` = 1: a given class whose
    /// diagonal is 0 gets 1, taken evenly from its other non-zero entries; counts truncate.
    static func keepAtLeastOne(_ calibrated: [Int], classes c: Int) -> [Int] {
        var prune = calibrated
        for g in 0..<c {
            let row = calibrated[(g * c)..<(g * c + c)]
            let diagonal = calibrated[g * c + g], raised = max(diagonal, 1)
            let spread = Double(raised - diagonal) / Double(max(row.filter { $0 != 0 }.count - 1, 1))
            for t in 0..<c where t != g { prune[g * c + t] = Int(max(Double(calibrated[g * c + t]) - spread, 0)) }
            prune[g * c + g] = raised
        }
        return prune
    }
}

/// Pass 3 of confident learning: the samples each filter picks, in bounded memory.
struct IssueSelector {
    struct Candidate {
        var key: Double
        var issue: LabelIssue
        /// The given class is the argmax once raised by epsilon: cleanlab drops the sample.
        var givenIsArgmax: Bool
    }

    let classes: Int
    let filter: LabelIssueFilter
    /// Per given class k: the classes j ≠ k with a count to prune, and their selections.
    private var byNoiseRate: [[(trueClass: Int, picked: BoundedSelection<Candidate>)]]
    /// Per given class k: all but the joint's diagonal count, lowest p(k) first.
    private var byClass: [BoundedSelection<Candidate>?]

    init(prune: [Int], counts: [Int], filter: LabelIssueFilter) {
        let c = counts.count
        classes = c
        self.filter = filter
        let first = { (a: Candidate, b: Candidate) in (a.key, a.issue.id) < (b.key, b.issue.id) }
        byNoiseRate = (0..<c).map { k in
            guard counts[k] > 1, filter != .pruneByClass else { return [] }
            return (0..<c).filter { $0 != k && prune[k * c + $0] > 0 }.map { ($0, BoundedSelection(capacity: prune[k * c + $0], by: first)) }
        }
        byClass = (0..<c).map { k in
            guard counts[k] > 1, filter != .pruneByNoiseRate, counts[k] - prune[k * c + k] >= 1 else { return nil }
            return BoundedSelection(capacity: counts[k] - prune[k * c + k], by: first)
        }
    }

    mutating func visit(id: UInt64, given g: Int, probs p: [Float]) {
        let suggested = argmax(p)
        let otherBest = p.enumerated().filter { $0.offset != g }.map(\.element).max() ?? 0
        let raised = Double(p[g]) + ConfidentLearning.epsilon
        let givenIsArgmax = !p.enumerated().contains { j, v in j < g ? Double(v) >= raised : j > g && Double(v) > raised }
        let issue = LabelIssue(rank: 0, id: id, given: g, suggested: suggested, selfConfidence: Double(p[g]), margin: Double(p[g]) - Double(otherBest))
        for i in byNoiseRate[g].indices {
            let j = byNoiseRate[g][i].trueClass
            byNoiseRate[g][i].picked.insert(Candidate(key: -(Double(p[j]) - Double(p[g])), issue: issue, givenIsArgmax: givenIsArgmax))
        }
        byClass[g]?.insert(Candidate(key: Double(p[g]), issue: issue, givenIsArgmax: givenIsArgmax))
    }

    /// The flagged samples, least self-confident first (ties by id), ranked from 1.
    mutating func ranked() -> [LabelIssue] {
        var noise: [UInt64: Candidate] = [:], byClassPicked: [UInt64: Candidate] = [:]
        for k in byNoiseRate.indices {
            for i in byNoiseRate[k].indices { for candidate in byNoiseRate[k][i].picked.sorted() { noise[candidate.issue.id] = candidate } }
        }
        for k in byClass.indices { for candidate in byClass[k]?.sorted() ?? [] { byClassPicked[candidate.issue.id] = candidate } }
        let flagged: [Candidate] = switch filter {
        case .pruneByNoiseRate: Array(noise.values)
        case .pruneByClass: Array(byClassPicked.values)
        case .both: noise.values.filter { byClassPicked[$0.issue.id] != nil }
        }
        return flagged.filter { !$0.givenIsArgmax }.map(\.issue)
            .sorted { ($0.selfConfidence, $0.id) < ($1.selfConfidence, $1.id) }
            .enumerated().map { var issue = $1; issue.rank = $0 + 1; return issue }
    }
}
