import Foundation

/// How a label set stores soft labels (distributions over the store's classes).
///
/// For example: `try SoftLabelCodec(parsing: "topk:5:f16")`.
///
/// Every codec decodes to a normalised distribution over all C classes. The byte layouts are in
/// format-spec/storage.md ("Soft-label codecs").
public enum SoftLabelCodec: Equatable, Sendable, CustomStringConvertible {
    /// Every probability as f32: exact, 4·C bytes.
    case denseF32
    /// Every probability as f16: 2·C bytes.
    case denseF16
    /// The K largest probabilities as f16 with their class indices, plus the leftover mass (f16),
    /// spread evenly over the other classes on decode (FKD's "marginal smoothing"). 4·K + 2 bytes.
    case topKF16(Int)
    /// The same with 8-bit values, quantised in the log domain between the row's smallest and
    /// largest kept probability (two f16 bounds), so relative error is even across magnitudes.
    /// 3·K + 6 bytes.
    case topKU8(Int)
    /// Per sample, the smallest K whose decoded distribution has KL(original ‖ decoded) ≤ ε nats
    /// (top-K f16 layout with K stored per row).
    case adaptive(Double)

    /// Parses `dense:f32`, `dense:f16`, `topk:K:f16`, `topk:K:u8` or `adaptive:EPS`.
    ///
    /// - Throws: ``LabelError/invalidCodec(_:)`` naming what is wrong.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        switch (parts.first, parts.count) {
        case ("dense", 2) where parts[1] == "f32": self = .denseF32
        case ("dense", 2) where parts[1] == "f16": self = .denseF16
        case ("topk", 3):
            guard let k = Int(parts[1]) else { throw LabelError.invalidCodec("'\(text)': K must be an integer") }
            guard k >= 1 else { throw LabelError.invalidCodec("'\(text)': K must be at least 1") }
            switch parts[2] {
            case "f16": self = .topKF16(k)
            case "u8": self = .topKU8(k)
            default: throw LabelError.invalidCodec("'\(text)': value type must be f16 or u8")
            }
        case ("adaptive", 2):
            // Below ~1e-6 nats f16 rounding alone can exceed the bound.
            guard let eps = Double(parts[1]), eps.isFinite, eps >= 1e-6 else {
                throw LabelError.invalidCodec("'\(text)': EPS must be a number ≥ 1e-6 (nats)")
            }
            self = .adaptive(eps)
        default:
            throw LabelError.invalidCodec("'\(text)': expected dense:f32, dense:f16, topk:K:f16, topk:K:u8 or adaptive:EPS")
        }
    }

    /// The codec's text form, as parsed.
    public var description: String {
        switch self {
        case .denseF32: "dense:f32"
        case .denseF16: "dense:f16"
        case .topKF16(let k): "topk:\(k):f16"
        case .topKU8(let k): "topk:\(k):u8"
        case .adaptive(let eps): "adaptive:\(eps)"
        }
    }

    /// Checks the codec against a class count.
    func validate(classCount: Int) throws {
        switch self {
        case .topKF16(let k), .topKU8(let k):
            guard k <= classCount else { throw LabelError.invalidCodec("\(self): K = \(k) is larger than the \(classCount) classes") }
            guard classCount <= 65_536 else { throw LabelError.invalidCodec("\(self): top-K codecs index at most 65,536 classes") }
        case .adaptive:
            guard classCount <= 65_536 else { throw LabelError.invalidCodec("\(self): adaptive indexes at most 65,536 classes") }
        default: break
        }
    }

    // MARK: Encoding

    /// Encodes `p` (C probabilities summing to 1), appending the bytes to `out`.
    public func encode(_ p: UnsafeBufferPointer<Float>, into out: inout [UInt8]) {
        let c = p.count
        switch self {
        case .denseF32:
            for v in p { appendLE(v.bitPattern, to: &out) }
        case .denseF16:
            for v in p { appendLE(Float16(v).bitPattern, to: &out) }
        case .topKF16(let k):
            let order = SoftLabelCodec.topIndices(p, k)
            SoftLabelCodec.encodeTopF16(p, order: order, into: &out)
        case .topKU8(let k):
            let order = SoftLabelCodec.topIndices(p, k)
            let values = order.map { max(p[$0], Float.leastNormalMagnitude) }
            let hi = log(values.first!), lo = log(values.last!)
            let hi16 = Float16(hi), lo16 = Float16(lo)
            appendLE(hi16.bitPattern, to: &out)
            appendLE(lo16.bitPattern, to: &out)
            let rest = SoftLabelCodec.leftover(p, order)
            appendLE(Float16(rest).bitPattern, to: &out)
            let span = Float(hi16) - Float(lo16)
            for (i, index) in order.enumerated() {
                appendLE(UInt16(index), to: &out)
                let q = span > 0 ? ((log(values[i]) - Float(lo16)) / span * 255).rounded() : 255
                out.append(UInt8(max(0, min(255, q))))
            }
            _ = c
        case .adaptive(let eps):
            let k = SoftLabelCodec.adaptiveK(p, eps: eps)
            let order = SoftLabelCodec.topIndices(p, k)
            appendLE(UInt16(truncatingIfNeeded: k), to: &out)
            SoftLabelCodec.encodeTopF16(p, order: order, into: &out)
        }
    }

    private static func encodeTopF16(_ p: UnsafeBufferPointer<Float>, order: [Int], into out: inout [UInt8]) {
        appendLE(Float16(leftover(p, order)).bitPattern, to: &out)
        for index in order {
            appendLE(UInt16(index), to: &out)
            appendLE(Float16(p[index]).bitPattern, to: &out)
        }
    }

    /// The mass outside `order`, computed as a sum of the small values (not 1 − Σ top, which
    /// cancels catastrophically when the top values are near 1).
    static func leftover(_ p: UnsafeBufferPointer<Float>, _ order: [Int]) -> Float {
        var kept = [Bool](repeating: false, count: p.count)
        for i in order { kept[i] = true }
        var rest: Double = 0
        for i in 0..<p.count where !kept[i] { rest += Double(p[i]) }
        return Float(rest)
    }

    /// The indices of the k largest values, largest first, ties by smaller index.
    public static func topIndices(_ p: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        if k >= p.count {
            return Array(0..<p.count).sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
        }
        // A bounded selection: keep the k best seen so far, sorted.
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        for i in 0..<p.count {
            let v = p[i]
            if best.count == k, let last = best.last, !(v > p[last]) { continue }
            var position = best.count
            while position > 0 && v > p[best[position - 1]] { position -= 1 }
            best.insert(i, at: position)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    /// The smallest K for which the decoded top-K distribution is within `eps` nats of `p`.
    static func adaptiveK(_ p: UnsafeBufferPointer<Float>, eps: Double) -> Int {
        let c = p.count
        let sorted = topIndices(p, c)
        // Estimate with exact values (no f16 rounding): KL(K) = Σ_{i>K} p_i ln p_i − r_K ln(r_K/(C−K)).
        var suffixPLogP = [Double](repeating: 0, count: c + 1)
        var suffixMass = [Double](repeating: 0, count: c + 1)
        for j in stride(from: c - 1, through: 0, by: -1) {
            let v = Double(p[sorted[j]])
            suffixPLogP[j] = suffixPLogP[j + 1] + (v > 0 ? v * log(v) : 0)
            suffixMass[j] = suffixMass[j + 1] + v
        }
        var k = 1
        while k < c {
            let r = suffixMass[k]
            let estimate = r > 0 ? suffixPLogP[k] - r * log(r / Double(c - k)) : 0
            if estimate <= eps * 0.9 { break }
            k += 1
        }
        // Confirm with the real decode (f16 rounding, renormalisation) and widen if needed, up to
        // and including K = C: one class at a time for the first 64 (f16 rounding makes KL
        // non-monotone in K, so a jump can pass over the K that works), then by an eighth, which
        // bounds the work for an EPS f16 cannot reach (probabilities below its smallest subnormal
        // round to zero): the row then keeps the K that came closest.
        var decoded = [Float](repeating: 0, count: c)
        var best = (k: c, kl: Double.infinity)
        let estimated = k
        while true {
            var bytes: [UInt8] = []
            appendLE(UInt16(truncatingIfNeeded: k), to: &bytes)
            encodeTopF16(p, order: Array(sorted.prefix(k)), into: &bytes)
            let kl = bytes.withUnsafeBytes { raw in
                decoded.withUnsafeMutableBufferPointer { out in
                    (try? SoftLabelCodec.adaptive(eps).decode(raw, into: out)) != nil ? klDivergence(p, UnsafeBufferPointer(out)) : .infinity
                }
            }
            if kl <= eps { return k }
            if kl < best.kl { best = (k, kl) }
            if k >= c { return best.k }
            k = min(c, k - estimated < 64 ? k + 1 : k + max(1, k / 8))
        }
    }

    // MARK: Decoding

    /// The exact encoded size for a fixed-size codec (nil for `adaptive`, whose rows vary).
    public func fixedSize(classCount c: Int) -> Int? {
        switch self {
        case .denseF32: 4 * c
        case .denseF16: 2 * c
        case .topKF16(let k): 2 + 4 * k
        case .topKU8(let k): 6 + 3 * k
        case .adaptive: nil
        }
    }

    /// Decodes `bytes` into `out` (C floats), normalised to sum 1.
    ///
    /// The arithmetic is format-spec/storage.md R-43: stored values widened to double, the total
    /// summed in double, each probability divided by it in double and rounded to float once — so
    /// any summation order (and any conforming reader) gives the same floats within one ulp.
    ///
    /// - Throws: ``RecordDecodingError`` describing the mismatch when the bytes do not fit the
    ///   codec (they are untrusted: decoding never traps).
    public func decode(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) throws {
        let c = out.count
        switch self {
        case .denseF32:
            guard bytes.count == 4 * c else { throw RecordDecodingError(detail: "dense:f32 label of \(bytes.count) bytes for \(c) classes") }
            var total: Double = 0
            var valid = true
            for i in 0..<c {
                let v = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                out[i] = v
                valid = valid && v.isFinite && v >= 0
                total += Double(v)
            }
            // The exact reference codec returns the stored values bit for bit when they are a
            // distribution already (rescaling would change them by rounding).
            if valid && abs(total - 1) < 1e-5 { return }
            SoftLabelCodec.normalise(out)
        case .denseF16:
            guard bytes.count == 2 * c else { throw RecordDecodingError(detail: "dense:f16 label of \(bytes.count) bytes for \(c) classes") }
            // safe: the length was checked just above.
            ElementEncoding.halfToFloat(bytes, count: c, into: out.baseAddress!)
            SoftLabelCodec.normalise(out)
        case .topKF16, .topKU8, .adaptive:
            let row = try storedEntries(bytes, classCount: c)
            row.expand(into: out)
        }
    }

    /// Decodes `bytes` into the compact form: the row's `k` most probable classes with their
    /// probabilities (as ``decode(_:into:)`` gives them), and returns the leftover mass.
    ///
    /// Top-K and adaptive rows are read as stored (most probable first), without expanding them to
    /// `classCount` floats; a row that keeps fewer than `k` classes is padded with class −1 and
    /// probability 0, and the mass of kept classes past `k` joins the leftover. Dense rows, and
    /// rows decode() must clean (a class twice, a value not finite or negative), are decoded in
    /// full and their `k` largest taken (ties by smaller class).
    public func decodeCompact(
        _ bytes: UnsafeRawBufferPointer, classCount c: Int, k: Int,
        classes: UnsafeMutablePointer<Int32>, probabilities: UnsafeMutablePointer<Float>
    ) throws -> Float {
        switch self {
        case .topKF16(let stored) where stored <= 64:
            // The common case, without allocating: the f16 entries read in place, twice.
            if let rest = try cleanTopF16Compact(bytes, stored: stored, classCount: c, k: k, classes: classes, probabilities: probabilities) {
                return rest
            }
        case .topKF16, .topKU8, .adaptive:
            let row = try storedEntries(bytes, classCount: c)
            if row.isClean, let total = row.total {
                var inside: Double = 0
                for i in 0..<k {
                    guard i < row.indices.count else { classes[i] = -1; probabilities[i] = 0; continue }
                    classes[i] = Int32(row.indices[i])
                    probabilities[i] = Float(row.values[i] / total)
                    inside += row.values[i]
                }
                return Float(max(0, total - inside) / total)
            }
        case .denseF32, .denseF16: break
        }
        var dense = [Float](repeating: 0, count: c)
        try dense.withUnsafeMutableBufferPointer { try decode(bytes, into: $0) }
        let top = dense.withUnsafeBufferPointer { SoftLabelCodec.topIndices($0, min(k, c)) }
        var inside: Double = 0
        for i in 0..<k {
            guard i < top.count else { classes[i] = -1; probabilities[i] = 0; continue }
            classes[i] = Int32(top[i])
            probabilities[i] = dense[top[i]]
            inside += Double(dense[top[i]])
        }
        return Float(max(0, 1 - inside))
    }

    /// decodeCompact for a clean `topk:K:f16` row read in place (R-43's arithmetic); nil when the
    /// row needs cleaning (a repeated class, a value not finite or negative) or has no mass.
    private func cleanTopF16Compact(
        _ bytes: UnsafeRawBufferPointer, stored: Int, classCount c: Int, k: Int,
        classes: UnsafeMutablePointer<Int32>, probabilities: UnsafeMutablePointer<Float>
    ) throws -> Float? {
        guard bytes.count == 2 + 4 * stored else { throw RecordDecodingError(detail: "\(self) label of \(bytes.count) bytes") }
        func u16(_ offset: Int) -> UInt16 { UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
        let rest = widenHalf(u16(0))
        var kept: Double = 0
        for i in 0..<stored {
            let index = Int(u16(2 + 4 * i))
            guard index < c else { throw RecordDecodingError(detail: "class index \(index) ≥ \(c)") }
            let value = widenHalf(u16(4 + 4 * i))
            guard value.isFinite, value >= 0 else { return nil }
            for j in 0..<i where Int(u16(2 + 4 * j)) == index { return nil }
            kept += value
        }
        guard rest.isFinite, rest >= 0 else { return nil }
        let total = kept + (stored < c ? rest : 0)
        guard total > 0, total.isFinite else { return nil }
        var inside: Double = 0
        for i in 0..<k {
            guard i < stored else { classes[i] = -1; probabilities[i] = 0; continue }
            let value = widenHalf(u16(4 + 4 * i))
            classes[i] = Int32(u16(2 + 4 * i))
            probabilities[i] = Float(value / total)
            inside += value
        }
        return Float(max(0, total - inside) / total)
    }

    /// The entries of a top-K, u8 or adaptive row, widened to double.
    private func storedEntries(_ bytes: UnsafeRawBufferPointer, classCount c: Int) throws -> SparseRow {
        var reader = ByteReader(bytes)
        var row = SparseRow(classCount: c)
        var count = 0
        switch self {
        case .denseF32, .denseF16:
            throw RecordDecodingError(detail: "\(self) rows have no sparse entries")
        case .topKF16(let k):
            guard bytes.count == 2 + 4 * k else { throw RecordDecodingError(detail: "\(self) label of \(bytes.count) bytes") }
            count = k
        case .adaptive:
            count = Int(try reader.u16("K"))
            guard count >= 1, count <= c, bytes.count == 4 + 4 * count else {
                throw RecordDecodingError(detail: "adaptive label with K = \(count) in \(bytes.count) bytes")
            }
        case .topKU8(let k):
            guard bytes.count == 6 + 3 * k else { throw RecordDecodingError(detail: "\(self) label of \(bytes.count) bytes") }
            let hi = Double(Float16(bitPattern: try reader.u16()))
            let lo = Double(Float16(bitPattern: try reader.u16()))
            row.rest = Double(Float16(bitPattern: try reader.u16()))
            for _ in 0..<k {
                let index = Int(try reader.u16())
                try row.append(index, exp(lo + Double(try reader.u8()) / 255 * (hi - lo)))
            }
            return row
        }
        row.rest = Double(Float16(bitPattern: try reader.u16()))
        for _ in 0..<count {
            let index = Int(try reader.u16())
            try row.append(index, Double(Float16(bitPattern: try reader.u16())))
        }
        return row
    }

    /// Rescales `out` to sum 1: negative and non-finite values count as 0, the total is a
    /// double, each value is divided by it in double and rounded once; all zeros become uniform.
    static func normalise(_ out: UnsafeMutableBufferPointer<Float>) {
        var total: Double = 0
        for i in 0..<out.count {
            let v = out[i]
            if !(v.isFinite && v > 0) { out[i] = 0 }
            total += Double(out[i])
        }
        guard total > 0, total.isFinite else {
            out.update(repeating: 1 / Float(out.count))
            return
        }
        for i in 0..<out.count { out[i] = Float(Double(out[i]) / total) }
    }
}

/// A top-K row's entries as decoding sees them: classes in stored order, values widened to
/// double, the leftover mass; a class stored twice keeps its later value and counts once.
struct SparseRow {
    let classCount: Int
    var indices: [Int] = []
    var values: [Double] = []
    var rest: Double = 0
    /// False when decode must clean the row (a repeated class, a negative or non-finite value).
    var isClean = true

    init(classCount: Int) { self.classCount = classCount }

    mutating func append(_ index: Int, _ value: Double) throws {
        guard index < classCount else { throw RecordDecodingError(detail: "class index \(index) ≥ \(classCount)") }
        if indices.contains(index) { isClean = false }
        if !(value.isFinite && value >= 0) { isClean = false }
        indices.append(index)
        values.append(value)
    }

    /// The kept values (each class once, its last value) with the cleaned leftover when any class
    /// is left to spread it over; nil when that total is 0 (the row decodes as uniform).
    var total: Double? {
        var kept: Double = 0
        var distinct = indices.count
        if isClean {
            for v in values { kept += v }
        } else {
            var last: [Int: Double] = [:]
            for (index, value) in zip(indices, values) { last[index] = value.isFinite && value > 0 ? value : 0 }
            for v in last.values { kept += v }
            distinct = last.count
        }
        let spread = classCount > distinct && rest.isFinite && rest > 0 ? rest : 0
        let total = kept + spread
        return total > 0 && total.isFinite ? total : nil
    }

    /// The full distribution: kept classes their value, the others an equal share of the leftover.
    func expand(into out: UnsafeMutableBufferPointer<Float>) {
        guard let total else {
            out.update(repeating: 1 / Float(out.count))
            return
        }
        if isClean {
            // Each class once, every value finite and ≥ 0: no map needed to keep the last value.
            let others = classCount - indices.count
            let share = others > 0 && rest.isFinite && rest > 0 ? rest / Double(others) : 0
            out.update(repeating: Float(share / total))
            for (index, value) in zip(indices, values) { out[index] = Float(value / total) }
            return
        }
        var last: [Int: Double] = [:]
        for (index, value) in zip(indices, values) { last[index] = value.isFinite && value > 0 ? value : 0 }
        let others = classCount - last.count
        let share = others > 0 && rest.isFinite && rest > 0 ? rest / Double(others) : 0
        out.update(repeating: Float(share / total))
        for (index, value) in last { out[index] = Float(value / total) }
    }
}

/// An IEEE binary16 value widened to binary64, exactly, by moving its bits: `Double(Float16)`
/// is a library call on x86-64 builds without F16C, the largest cost of a compact view read.
@inline(__always)
func widenHalf(_ bits: UInt16) -> Double {
    let exponent = Int(bits >> 10) & 0x1F, mantissa = UInt64(bits & 0x3FF)
    let sign: Double = bits & 0x8000 != 0 ? -1 : 1
    switch exponent {
    case 0: return sign * Double(mantissa) * 0x1p-24   // zero and subnormals: m · 2⁻²⁴
    case 31: return Double(Float16(bitPattern: bits))   // infinities and NaNs
    default:
        return Double(bitPattern: UInt64(bits & 0x8000) << 48 | UInt64(exponent - 15 + 1023) << 52 | mantissa << 42)
    }
}

/// KL(p ‖ q) in nats; terms with p = 0 contribute nothing; q is floored to avoid infinities
/// from a codec that rounds a tiny probability to zero.
public func klDivergence(_ p: UnsafeBufferPointer<Float>, _ q: UnsafeBufferPointer<Float>) -> Double {
    var sum: Double = 0
    for i in 0..<p.count where p[i] > 0 {
        let pi = Double(p[i])
        sum += pi * log(pi / max(Double(q[i]), 1e-30))
    }
    return max(sum, 0)
}

func appendLE<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
}
