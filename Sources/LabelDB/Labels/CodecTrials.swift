import Foundation

/// What one soft-label codec would cost on a set of labels: bytes, KL and top-1, measured by
/// encoding and decoding every row (or a seeded sample) exactly as an import would.
public struct CodecTrial: Sendable, Equatable {
    /// The codec tried.
    public var codec: SoftLabelCodec
    /// Its fidelity on the rows tried.
    public var fidelity: Fidelity
}

/// Choosing a codec: every candidate measured on the labels at hand (`labels import --dry-run`),
/// the smallest that meets a KL bound (`--codec auto:MAXKL`), and whether a chosen codec is
/// dominated — another is no larger and no less exact (issue 17).
public enum CodecTrials {
    /// The candidates for C classes: dense f32 and f16; top-K f16 and u8 for K in 1, 2, 3, 5, 10,
    /// 20, 50, 100 below C; adaptive at 1e-2, 1e-3 and 1e-4 nats (plus `extra`, e.g. a requested
    /// codec or an auto bound).
    public static func candidates(classCount c: Int, extra: [SoftLabelCodec] = []) -> [SoftLabelCodec] {
        var list: [SoftLabelCodec] = [.denseF32, .denseF16]
        for k in [1, 2, 3, 5, 10, 20, 50, 100] where k < c { list += [.topKF16(k), .topKU8(k)] }
        list += [.adaptive(1e-2), .adaptive(1e-3), .adaptive(1e-4)]
        for codec in extra where !list.contains(codec) { list.append(codec) }
        return list
    }

    /// The dense rows of `values` (soft or top-K) as an import would encode them, checked;
    /// `sample` keeps at most that many rows, chosen with a fixed seed (all when fewer).
    public static func rows(_ values: LabelValues, rows n: Int, classCount c: Int, normalize: Bool, sample: Int = .max) throws -> (rows: [Float], count: Int) {
        var chosen = Array(0..<n)
        if n > sample {
            var rng = SplitMix64(seed: 17)
            chosen.shuffle(using: &rng)
            chosen = Array(chosen.prefix(sample)).sorted()
        }
        var out: [Float] = []
        out.reserveCapacity(chosen.count * c)
        switch values {
        case .soft:
            let p = try LabelValidation.check(values, rows: n, classCount: c, normalize: normalize)
            for r in chosen { out += p[(r * c)..<((r + 1) * c)] }
        case .topK(let given):
            let checked = try given.validated(rows: n, classCount: c, normalize: normalize)
            for r in chosen { out += checked.dense(r, classCount: c) }
        case .hard, .multi:
            throw LabelError.invalidCodec("codecs apply to soft labels; hard and multi labels are stored as class indices")
        }
        return (out, chosen.count)
    }

    /// Each codec's fidelity on `rows` (count × C, row-major). With `stopAboveMaxKL`, a codec is
    /// abandoned at the first row whose KL exceeds it (its trial then reports that row's KL as
    /// max KL over the rows seen so far), which makes a search for the smallest passing codec cheap.
    public static func measure(_ codecs: [SoftLabelCodec], rows: [Float], count: Int, classCount c: Int,
                               stopAboveMaxKL: Double? = nil) throws -> [CodecTrial] {
        try codecs.map { codec in
            try codec.validate(classCount: c)
            var fidelity = FidelityAccumulator(classCount: c)
            var decoded = [Float](repeating: 0, count: c)
            try rows.withUnsafeBufferPointer { all in
                for r in 0..<count {
                    _ = try SoftEncoding.encode(UnsafeBufferPointer(rebasing: all[(r * c)..<((r + 1) * c)]), codec: codec, decoded: &decoded, fidelity: &fidelity)
                    if let bound = stopAboveMaxKL, fidelity.klMax > bound { break }
                }
            }
            return CodecTrial(codec: codec, fidelity: fidelity.result())
        }
    }

    /// The smallest codec (bytes per label, then mean KL) among `trials` whose max KL is ≤ `maxKL`.
    public static func smallest(meeting maxKL: Double, in trials: [CodecTrial]) -> CodecTrial? {
        trials.filter { $0.fidelity.maxKL <= maxKL }.min {
            ($0.fidelity.bytesPerLabel, $0.fidelity.meanKL) < ($1.fidelity.bytesPerLabel, $1.fidelity.meanKL)
        }
    }

    /// A trial that dominates `codec`'s: no more bytes per label, no larger mean or max KL, no
    /// lower top-1 agreement, and strictly better in bytes or in max KL (the smallest such).
    public static func dominating(_ codec: SoftLabelCodec, in trials: [CodecTrial]) -> CodecTrial? {
        guard let mine = trials.first(where: { $0.codec == codec })?.fidelity else { return nil }
        return trials.filter { other in
            let f = other.fidelity
            return other.codec != codec && f.bytesPerLabel <= mine.bytesPerLabel && f.meanKL <= mine.meanKL && f.maxKL <= mine.maxKL
                && f.top1Agreement >= mine.top1Agreement && (f.bytesPerLabel < mine.bytesPerLabel || f.maxKL < mine.maxKL)
        }.min { $0.fidelity.bytesPerLabel < $1.fidelity.bytesPerLabel }
    }
}
