import Foundation

/// How `labels consensus` combines several label sets into one soft label per sample (issue 13).
public enum ConsensusMethod: String, Sendable, CaseIterable {
    /// The weighted mean of the sources' distributions (hard labels one-hot, multi uniform),
    /// over the sources that label the sample.
    case mean
    /// The weighted fractions of the sources' top-1 votes; a tie goes to the class whose voters'
    /// mean confidence is highest (then the smaller class).
    case vote
    /// Dawid–Skene: EM over a confusion matrix per source, from the top-1 votes; the posterior
    /// class distribution is the label.
    case dawidSkene = "dawid-skene"
}

/// What a consensus import did.
public struct ConsensusReport: Sendable {
    /// The version written.
    public var version: LabelSetVersion
    /// The sources as `NAME@VERSION`.
    public var sources: [String]
    /// Dawid–Skene only: EM iterations run, and each source's estimated accuracy
    /// (Σ_c prior(c) · P(votes c | true c)).
    public var iterations: Int?
    public var sourceAccuracy: [Double]?
    /// With a reference: each source's per-class accuracy on it, which weighed its labels.
    public var referenceAccuracy: ReferenceAccuracy?
}

/// Errors of a consensus.
public enum ConsensusError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A weight that is not a finite number ≥ 0, or weights for names not among the sources.
    case weights(String)
    /// Dawid–Skene stopped at its iteration cap before the posteriors settled; nothing written.
    case notConverged(iterations: Int, change: Double)
    /// No visible sample is labelled by any source.
    case nothingToLabel
    /// An option out of range, or one the method does not use.
    case options(String)

    public var description: String {
        switch self {
        case .weights(let why): why
        case .notConverged(let n, let change):
            "Dawid–Skene did not converge in \(n) iterations (its log-likelihood per sample still moved by \(change) nats in the last); nothing written"
        case .nothingToLabel: "no sample the clearance sees is labelled by any source"
        case .options(let why): why
        }
    }
}

extension WriteTransaction {
    /// Writes a new version of label set `name`: for every sample the clearance sees that at
    /// least one source labels, the consensus of the sources' labels (see ``ConsensusMethod``).
    /// `weights` (one per source, default 1) scale each source in `mean` and `vote`; Dawid–Skene
    /// stops when its log-likelihood per sample moves by less than `tolerance` (nats) in an
    /// iteration, and fails after
    /// `maxIterations`. With a `reference` (mean and vote), each source's label of class c is
    /// further weighted by the source's accuracy on the reference samples it gave class c
    /// (``ReferenceAccuracy``), so a teacher that is often wrong when it says "dog" counts
    /// less when it says "dog", and as much as before elsewhere. Reference samples are labelled
    /// like every other sample.
    ///
    /// Described in the provenance log as `label consensus` (sources, the reference set, method,
    /// weights, reference).
    /// The version's source label is the secrecy of every source row used (each row's source,
    /// joined), with no integrity tag: a consensus is vouched for by no one, so rows that used a
    /// licensed teacher's label are licensed too (conservatively, all rows of the version).
    ///
    /// - Throws: ``ConsensusError``, ``AgreementError`` (fewer than two sources, one twice),
    ///   ``LabelError``; nothing is written.
    public func consensus(
        into name: String, from references: [LabelSetReference], method: ConsensusMethod, weights: [Double]? = nil,
        reference: ConsensusReference? = nil, codec: SoftLabelCodec? = nil, agent: String, tolerance: Double = 1e-6, maxIterations: Int = 500
    ) throws -> ConsensusReport {
        let request = try consensusRequest(references, method: method, weights: weights, reference: reference, tolerance: tolerance, maxIterations: maxIterations)
        let labels = try request.compute(agent: agent, rows: consensusRows(references, reference: reference))
        let info = try importLabels(.soft(labels.soft), ids: labels.ids, into: name, codec: codec, agent: agent, source: labels.source, normalize: true)
        var record = labels.record
        record.generated = [ProvenanceEntity(kind: "label_set", name: name, version: info.version, rows: info.rows)]
        describe(record)
        return labels.report(info)
    }
}

/// The rows a consensus reads, in id order: each sample's labels from the sources and then the
/// reference set (when there is one), and whether it is a reference sample.
typealias ConsensusRows = (_ body: (UInt64, [Label?], Bool) throws -> Void) throws -> Void

/// A consensus with its options checked and its sources resolved, ready to read rows (from one
/// store, or from every shard of a corpus).
struct ConsensusRequest {
    var method: ConsensusMethod
    var names: [String]
    var sources: [QueryLabelSource]
    var weights: [Double]
    var reference: ConsensusReference?
    /// `NAME@V` (or `NAME@V tagged T`) of the reference, and the entity of its label set.
    var referenceName: String?
    var referenceEntity: ProvenanceEntity?
    var classes: Int
    var tolerance: Double
    var maxIterations: Int

    /// The consensus of `rows`: the labels, their source label, and what the report and the
    /// provenance record say of them (see ``WriteTransaction/consensus(into:from:method:weights:reference:codec:agent:tolerance:maxIterations:)``).
    func compute(agent: String, rows: ConsensusRows) throws -> ConsensusLabels {
        let read = try readRows(rows)
        let c = classes, w = weights
        var iterations: Int? = nil, accuracy: [Double]? = nil
        // Per sample, each source's weight: the caller's, times its reference accuracy.
        let rowWeights = { (row: [Label?]) in read.reference.map { zip(w, $0.weights(of: row)).map(*) } ?? w }
        let soft: [Float]
        switch method {
        case .mean: soft = read.labels.flatMap { WriteTransaction.mean($0, weights: rowWeights($0), classes: c) }
        case .vote: soft = read.labels.flatMap { WriteTransaction.vote($0, weights: rowWeights($0), classes: c) }
        case .dawidSkene:
            let fit = try DawidSkene.fit(votes: read.labels.map { $0.map { $0?.top1?.classIndex } }, classes: c, tolerance: tolerance, maxIterations: maxIterations)
            soft = fit.posteriors
            (iterations, accuracy) = (fit.iterations, fit.accuracy)
        }
        var parameters = ["method": method.rawValue, "weights": zip(names, w).map { "\($0)=\($1)" }.joined(separator: ",")]
        if let iterations { parameters["iterations"] = "\(iterations)" }
        if let accuracy { parameters["source_accuracy"] = zip(names, accuracy).map { "\($0)=\($1)" }.joined(separator: ",") }
        var used = sources.map(\.entity)
        if let learned = read.reference, let referenceEntity {
            parameters["reference"] = learned.reference
            if !used.contains(referenceEntity) { used.append(referenceEntity) }
        }
        return ConsensusLabels(ids: read.ids, soft: soft, source: TaintLabel(secrecy: read.secrecy, integrity: .tags([])), names: names,
                               iterations: iterations, accuracy: accuracy, referenceAccuracy: read.reference,
                               record: ProvenanceRecord(activity: "label consensus", agent: agent, used: used, parameters: parameters))
    }

    /// The samples a consensus labels with the sources' labels, the secrecy they carry, and
    /// what the reference (when given) says of each source.
    private func readRows(_ rows: ConsensusRows) throws -> (ids: [UInt64], labels: [[Label?]], secrecy: TagSet, reference: ReferenceAccuracy?) {
        var ids: [UInt64] = [], labels: [[Label?]] = []
        // The secrecy the rows carry: per sample (mean, vote), each row's source suffices, the
        // sample's own being joined when the row is written; Dawid–Skene's output for one sample
        // depends on every sample's votes, so it takes every row's whole label, and so do the
        // reference rows and the source rows on reference samples, which weigh every sample.
        var secrecy = TagSet.tags([])
        var learned = referenceName.map { ReferenceAccuracy(reference: $0, sources: sources.count, classes: classes) }
        try rows { id, all, isReference in
            let row = Array(all.prefix(sources.count))
            if isReference, row.contains(where: { $0?.top1 != nil }) {
                learned!.count(row, truth: all.last!!.top1!.classIndex)
                secrecy = row.compactMap { $0?.taint.secrecy }.reduce(secrecy.union(all.last!!.taint.secrecy)) { $0.union($1) }
            }
            // A sample only zero-weighted sources label gets no label (Σw·P / Σw is 0/0).
            guard row.indices.contains(where: { row[$0]?.top1 != nil && (method == .dawidSkene || weights[$0] > 0) }) else { return }
            ids.append(id)
            labels.append(row)
            for (source, label) in zip(sources, row) where label != nil {
                secrecy = secrecy.union(method == .dawidSkene ? label!.taint.secrecy : WriteTransaction.rowSource(source, label!).secrecy)
            }
        }
        guard !ids.isEmpty else { throw ConsensusError.nothingToLabel }
        if let learned, learned.samples == 0 {
            throw ConsensusError.options("the reference \(learned.reference) labels no sample a source labels under this clearance")
        }
        return (ids, labels, secrecy, learned)
    }
}

/// A consensus computed and not yet written.
struct ConsensusLabels {
    var ids: [UInt64]
    /// One distribution per id, `ids.count` × C.
    var soft: [Float]
    /// The version's source label.
    var source: TaintLabel
    var names: [String]
    var iterations: Int?
    var accuracy: [Double]?
    var referenceAccuracy: ReferenceAccuracy?
    /// The provenance record of the write, without what it generated.
    var record: ProvenanceRecord

    /// The report of the consensus once written as `version`.
    func report(_ version: LabelSetVersion) -> ConsensusReport {
        ConsensusReport(version: version, sources: names, iterations: iterations, sourceAccuracy: accuracy, referenceAccuracy: referenceAccuracy)
    }
}

extension Transaction {
    /// A consensus's options checked against this store, and its sources resolved.
    func consensusRequest(
        _ references: [LabelSetReference], method: ConsensusMethod, weights: [Double]?, reference: ConsensusReference?, tolerance: Double, maxIterations: Int
    ) throws -> ConsensusRequest {
        let names = try distinctSources(references, needing: "a consensus needs at least two sources")
        let c = store.schema.classes.count
        let w = try WriteTransaction.checkConsensusOptions(method, weights: weights, sources: references.count, reference: reference,
                                                           tolerance: tolerance, maxIterations: maxIterations, classes: c)
        return ConsensusRequest(method: method, names: names, sources: try references.map { try labelSource($0, for: "a consensus") }, weights: w,
                                reference: reference, referenceName: try reference.map { try referenceName($0) },
                                referenceEntity: try reference.map { try labelSource($0.labels, for: "a consensus").entity },
                                classes: c, tolerance: tolerance, maxIterations: maxIterations)
    }

    /// This store's consensus rows: the sources' labels and the reference's, for every sample the
    /// clearance sees, in id order.
    func consensusRows(_ references: [LabelSetReference], reference: ConsensusReference?) -> ConsensusRows {
        { body in
            _ = try self.query(nil, labels: references + (reference.map { [$0.labels] } ?? [])) { id, all in
                try body(id, all, try reference.map { try self.isReferenceSample(id, all.last!, $0) } ?? false)
            }
        }
    }
}

extension WriteTransaction {
    /// The weights (default 1 each), once the options are known to fit the method.
    static func checkConsensusOptions(
        _ method: ConsensusMethod, weights: [Double]?, sources: Int, reference: ConsensusReference?, tolerance: Double, maxIterations: Int, classes c: Int
    ) throws -> [Double] {
        let w = weights ?? Array(repeating: 1, count: sources)
        guard w.count == sources, w.allSatisfy({ $0.isFinite && $0 >= 0 }), w.contains(where: { $0 > 0 }) else {
            throw ConsensusError.weights("weights must be numbers ≥ 0, one per source, not all 0")
        }
        guard method == .dawidSkene else { return w }
        guard weights == nil else { throw ConsensusError.options("weights are not used by dawid-skene (it estimates each source's reliability)") }
        guard reference == nil else { throw ConsensusError.options("a reference is not used by dawid-skene (it estimates each source's reliability without one); use mean or vote") }
        guard tolerance > 0, tolerance.isFinite, (2...100_000).contains(maxIterations) else {
            throw ConsensusError.options("dawid-skene needs a tolerance > 0 and 2 to 100,000 iterations (convergence compares two)")
        }
        // A confusion matrix per source: C² numbers each.
        guard c <= DawidSkene.maximumClasses else {
            throw ConsensusError.options("dawid-skene keeps a \(c) × \(c) confusion matrix per source; at most \(DawidSkene.maximumClasses) classes are supported")
        }
        return w
    }

    /// The label a source row carries besides its sample's: its version's source, or a projector's.
    static func rowSource(_ source: QueryLabelSource, _ label: Label) -> TaintLabel {
        switch source {
        case .stored(let set, _): set.versions[label.version - 1].sourceLabel
        case .projector(let loaded): loaded.taint
        }
    }

    static func mean(_ row: [Label?], weights: [Double], classes c: Int) -> [Float] {
        var sum = [Double](repeating: 0, count: c), total = 0.0
        for (label, w) in zip(row, weights) where label?.top1 != nil && w > 0 {
            for (k, p) in label!.distribution(classCount: c).enumerated() { sum[k] += w * Double(p) }
            total += w
        }
        return total > 0 ? sum.map { Float($0 / total) } : [Float](repeating: 1 / Float(c), count: c)
    }

    static func vote(_ row: [Label?], weights: [Double], classes c: Int) -> [Float] {
        var votes = [Double](repeating: 0, count: c), confidence = [Double](repeating: 0, count: c), voters = [Int](repeating: 0, count: c)
        var total = 0.0
        for (label, w) in zip(row, weights) where w > 0 {
            guard let top = label?.top1 else { continue }
            votes[top.classIndex] += w
            confidence[top.classIndex] += Double(top.confidence)
            voters[top.classIndex] += 1
            total += w
        }
        guard total > 0 else { return [Float](repeating: 1 / Float(c), count: c) }
        var fractions = votes.map { $0 / total }
        // A tie: the class whose voters were surest wins, by a margin far below any codec's
        // resolution of a real difference but enough to make it the argmax.
        let best = votes.max()!
        // Weighted sums that differ by rounding only are a tie too.
        let tied = (0..<c).filter { best - votes[$0] <= 1e-9 * total }
        if tied.count > 1, let winner = tied.max(by: { confidence[$0] / Double(voters[$0]) < confidence[$1] / Double(voters[$1]) || (confidence[$0] / Double(voters[$0]) == confidence[$1] / Double(voters[$1]) && $0 > $1) }) {
            fractions[winner] += 1e-3
            let sum = fractions.reduce(0, +)
            fractions = fractions.map { $0 / sum }
        }
        return fractions.map(Float.init)
    }
}

/// Dawid & Skene (1979): each source s has a confusion matrix θₛ[true][given]; EM alternates the
/// posterior of each sample's true class given its votes and the maximum-likelihood priors and
/// confusions given those posteriors. Deterministic: it starts from the vote fractions, and stops
/// when the log-likelihood of the votes per sample moves by less than the tolerance (which takes
/// two iterations at least: the first has nothing to compare with).
enum DawidSkene {
    /// The most classes a fit accepts: it keeps sources × C² confusion entries.
    static let maximumClasses = 1024
    /// Added to every count, so that no confusion entry is 0 and its log finite.
    static let smoothing = 1e-6

    struct Fit {
        var posteriors: [Float]
        var iterations: Int
        var accuracy: [Double]
    }

    /// The parameters an M-step estimates.
    struct Parameters {
        var prior: [Double]
        /// `[(s · C + true) · C + given]`.
        var theta: [Double]
    }

    /// `votes[i][s]`: source s's class for sample i, or nil.
    static func fit(votes: [[Int?]], classes c: Int, tolerance: Double, maxIterations: Int) throws -> Fit {
        let n = votes.count
        // Start: each sample's vote fractions.
        var t = [Double](repeating: 0, count: n * c)
        for (i, row) in votes.enumerated() {
            let cast = row.compactMap { $0 }
            for k in cast { t[i * c + k] += 1 / Double(cast.count) }
        }
        var previous = -Double.infinity, change = Double.infinity
        for iteration in 1...max(maxIterations, 1) {
            let parameters = mStep(votes: votes, posteriors: t, classes: c)
            let likelihood = eStep(votes: votes, parameters: parameters, classes: c, posteriors: &t)
            // EM raises the likelihood every iteration; stop once it has flattened out.
            change = abs(likelihood - previous) / Double(max(n, 1))
            previous = likelihood
            if change < tolerance {
                let sources = votes.first?.count ?? 0
                let accuracy = (0..<sources).map { s in (0..<c).reduce(0.0) { $0 + parameters.prior[$1] * parameters.theta[(s * c + $1) * c + $1] } }
                return Fit(posteriors: t.map(Float.init), iterations: iteration, accuracy: accuracy)
            }
        }
        throw ConsensusError.notConverged(iterations: maxIterations, change: change)
    }

    /// The class priors and each source's confusion, from the posteriors.
    static func mStep(votes: [[Int?]], posteriors t: [Double], classes c: Int) -> Parameters {
        let n = votes.count, sources = votes.first?.count ?? 0
        var prior = [Double](repeating: smoothing, count: c)
        for i in 0..<n { for k in 0..<c { prior[k] += t[i * c + k] } }
        let priorSum = prior.reduce(0, +)
        prior = prior.map { $0 / priorSum }
        var theta = [Double](repeating: smoothing, count: sources * c * c)
        for (i, row) in votes.enumerated() {
            for (s, vote) in row.enumerated() {
                guard let k = vote else { continue }
                for j in 0..<c { theta[(s * c + j) * c + k] += t[i * c + j] }
            }
        }
        for s in 0..<sources {
            for j in 0..<c {
                let base = (s * c + j) * c
                let sum = theta[base..<(base + c)].reduce(0, +)
                for k in 0..<c { theta[base + k] /= sum }
            }
        }
        return Parameters(prior: prior, theta: theta)
    }

    /// The posteriors given the parameters (in logs, taken once per iteration, not per sample);
    /// returns the log-likelihood of the votes.
    static func eStep(votes: [[Int?]], parameters: Parameters, classes c: Int, posteriors t: inout [Double]) -> Double {
        let logPrior = parameters.prior.map { log($0) }, logTheta = parameters.theta.map { log($0) }
        var likelihood = 0.0
        for (i, row) in votes.enumerated() {
            var logp = logPrior
            for (s, vote) in row.enumerated() {
                guard let k = vote else { continue }
                for j in 0..<c { logp[j] += logTheta[(s * c + j) * c + k] }
            }
            let top = logp.max()!
            let e = logp.map { exp($0 - top) }
            let sum = e.reduce(0, +)
            likelihood += top + log(sum)
            for j in 0..<c { t[i * c + j] = e[j] / sum }
        }
        return likelihood
    }
}
