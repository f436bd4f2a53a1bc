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
    /// - Throws: ``RecordDecodingError`` describing the mismatch when the bytes do not fit the
    ///   codec (they are untrusted: decoding never traps).
    public func decode(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) throws {
        let c = out.count
        var reader = ByteReader(bytes)
        switch self {
        case .denseF32:
            guard bytes.count == 4 * c else { throw RecordDecodingError(detail: "dense:f32 label of \(bytes.count) bytes for \(c) classes") }
            var sum: Double = 0
            var valid = true
            for i in 0..<c {
                out[i] = Float(bitPattern: try reader.u32())
                valid = valid && out[i].isFinite && out[i] >= 0
                sum += Double(out[i])
            }
            // The exact reference codec returns the stored values bit for bit when they are a
            // distribution already (rescaling would change them by float rounding).
            if valid && abs(sum - 1) < 1e-5 { return }
        case .denseF16:
            guard bytes.count == 2 * c else { throw RecordDecodingError(detail: "dense:f16 label of \(bytes.count) bytes for \(c) classes") }
            // safe: the length was checked just above.
            ElementEncoding.halfToFloat(bytes, count: c, into: out.baseAddress!)
        case .topKF16(let k):
            guard bytes.count == 2 + 4 * k else { throw RecordDecodingError(detail: "\(self) label of \(bytes.count) bytes") }
            try SoftLabelCodec.decodeTopF16(&reader, k: k, into: out)
        case .adaptive:
            let k = Int(try reader.u16("K"))
            guard k >= 1, k <= c, bytes.count == 4 + 4 * k else { throw RecordDecodingError(detail: "adaptive label with K = \(k) in \(bytes.count) bytes") }
            try SoftLabelCodec.decodeTopF16(&reader, k: k, into: out)
        case .topKU8(let k):
            guard bytes.count == 6 + 3 * k else { throw RecordDecodingError(detail: "\(self) label of \(bytes.count) bytes") }
            let hi = Float(Float16(bitPattern: try reader.u16()))
            let lo = Float(Float16(bitPattern: try reader.u16()))
            let rest = Float(Float16(bitPattern: try reader.u16()))
            var indices = [Int](), values = [Float]()
            for _ in 0..<k {
                let index = Int(try reader.u16())
                let q = Float(try reader.u8())
                guard index < c else { throw RecordDecodingError(detail: "class index \(index) ≥ \(c)") }
                indices.append(index)
                values.append(exp(lo + q / 255 * (hi - lo)))
            }
            SoftLabelCodec.fill(out, indices: indices, values: values, rest: rest)
        }
        SoftLabelCodec.normalise(out)
    }

    /// Decodes `bytes` into the compact form: the row's `k` most probable classes with their
    /// probabilities (as ``decode(_:into:)`` would give them), and returns the leftover mass.
    ///
    /// Top-K and adaptive rows are read as stored (most probable first), without expanding them to
    /// `classCount` floats; a row that keeps fewer than `k` classes is padded with class −1 and
    /// probability 0, and the mass of kept classes past `k` joins the leftover. Dense rows, and
    /// damaged rows (a class twice, a value not finite or negative), are decoded in full and their
    /// `k` largest taken (ties by smaller class).
    public func decodeCompact(
        _ bytes: UnsafeRawBufferPointer, classCount c: Int, k: Int,
        classes: UnsafeMutablePointer<Int32>, probabilities: UnsafeMutablePointer<Float>
    ) throws -> Float {
        if let entries = try storedEntries(bytes, classCount: c) {
            let kept = entries.values.reduce(0, +)
            // decode() spreads the leftover over the other classes, then divides by the total.
            let spread = entries.indices.count < c ? entries.rest : 0
            let total = kept + spread
            if total > 0, total.isFinite {
                let scale = 1 / total
                var inside: Float = 0
                for i in 0..<k {
                    guard i < entries.indices.count else { classes[i] = -1; probabilities[i] = 0; continue }
                    classes[i] = Int32(entries.indices[i])
                    probabilities[i] = entries.values[i] * scale
                    inside += probabilities[i]
                }
                return max(0, 1 - inside)
            }
        }
        var dense = [Float](repeating: 0, count: c)
        try dense.withUnsafeMutableBufferPointer { try decode(bytes, into: $0) }
        let top = dense.withUnsafeBufferPointer { SoftLabelCodec.topIndices($0, min(k, c)) }
        var inside: Float = 0
        for i in 0..<k {
            guard i < top.count else { classes[i] = -1; probabilities[i] = 0; continue }
            classes[i] = Int32(top[i])
            probabilities[i] = dense[top[i]]
            inside += dense[top[i]]
        }
        return max(0, 1 - inside)
    }

    /// The stored entries of a top-K or adaptive row (classes, values, leftover), or nil when the
    /// codec is dense or the row needs decode()'s cleaning (a repeated class, a value that is not
    /// finite or is negative).
    private func storedEntries(_ bytes: UnsafeRawBufferPointer, classCount c: Int) throws -> (indices: [Int], values: [Float], rest: Float)? {
        var reader = ByteReader(bytes)
        var indices: [Int] = [], values: [Float] = []
        let rest: Float
        switch self {
        case .denseF32, .denseF16:
            return nil
        case .topKF16(let k):
            guard bytes.count == 2 + 4 * k else { throw RecordDecodingError(detail: "\(self) label of \(bytes.count) bytes") }
            rest = Float(Float16(bitPattern: try reader.u16()))
            for _ in 0..<k {
                indices.append(Int(try reader.u16()))
                values.append(Float(Float16(bitPattern: try reader.u16())))
            }
        case .adaptive:
            let k = Int(try reader.u16("K"))
            guard k >= 1, k <= c, bytes.count == 4 + 4 * k else { throw RecordDecodingError(detail: "adaptive label with K = \(k) in \(bytes.count) bytes") }
            rest = Float(Float16(bitPattern: try reader.u16()))
            for _ in 0..<k {
                indices.append(Int(try reader.u16()))
                values.append(Float(Float16(bitPattern: try reader.u16())))
            }
        case .topKU8(let k):
            guard bytes.count == 6 + 3 * k else { throw RecordDecodingError(detail: "\(self) label of \(bytes.count) bytes") }
            let hi = Float(Float16(bitPattern: try reader.u16()))
            let lo = Float(Float16(bitPattern: try reader.u16()))
            rest = Float(Float16(bitPattern: try reader.u16()))
            for _ in 0..<k {
                indices.append(Int(try reader.u16()))
                values.append(exp(lo + Float(try reader.u8()) / 255 * (hi - lo)))
            }
        }
        if let bad = indices.first(where: { $0 >= c }) { throw RecordDecodingError(detail: "class index \(bad) ≥ \(c)") }
        guard rest.isFinite, rest >= 0, values.allSatisfy({ $0.isFinite && $0 >= 0 }), Set(indices).count == indices.count else { return nil }
        return (indices, values, rest)
    }

    private static func decodeTopF16(_ reader: inout ByteReader, k: Int, into out: UnsafeMutableBufferPointer<Float>) throws {
        let rest = Float(Float16(bitPattern: try reader.u16()))
        try reader.need(4 * k, "top-K entries")
        // Read in place (no temporary arrays): this runs once per label read.
        let base = reader.offset
        let bytes = reader.bytes
        try fill(out, k: k, rest: rest) { i in
            let index = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: base + 4 * i, as: UInt16.self)))
            let value = Float(Float16(bitPattern: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: base + 4 * i + 2, as: UInt16.self))))
            return (index, value)
        }
        try reader.skip(4 * k, "top-K entries")
    }

    /// Kept values at their classes; the leftover spread evenly over the others (a class listed
    /// twice in damaged bytes counts once).
    private static func fill(
        _ out: UnsafeMutableBufferPointer<Float>, k: Int, rest: Float, entry: (Int) throws -> (Int, Float)
    ) throws {
        var distinct = 0
        for i in 0..<k {
            let (index, _) = try entry(i)
            guard index < out.count else { throw RecordDecodingError(detail: "class index \(index) ≥ \(out.count)") }
            var seen = false
            for j in 0..<i where try entry(j).0 == index { seen = true; break }
            if !seen { distinct += 1 }
        }
        let others = out.count - distinct
        let share = others > 0 ? max(rest, 0) / Float(others) : 0
        out.update(repeating: share)
        for i in 0..<k {
            let (index, value) = try entry(i)
            out[index] = max(value, 0)
        }
    }

    /// Kept values at their classes; the leftover spread evenly over the others.
    private static func fill(_ out: UnsafeMutableBufferPointer<Float>, indices: [Int], values: [Float], rest: Float) {
        try? fill(out, k: indices.count, rest: rest) { (indices[$0], values[$0]) }
    }

    static func normalise(_ out: UnsafeMutableBufferPointer<Float>) {
        // Fast path: a branch-free sum (vectorised); damaged bytes (NaN, ∞, negatives) are rare
        // and take the cleaning pass.
        var total: Float = 0
        var minimum: Float = 0
        for v in out {
            total += v
            minimum = min(minimum, v)
        }
        if !(total.isFinite && minimum >= 0) {
            total = 0
            for i in 0..<out.count {
                let v = out[i]
                out[i] = v.isFinite && v > 0 ? v : 0
                total += out[i]
            }
        }
        guard total > 0, total.isFinite else {
            out.update(repeating: 1 / Float(out.count))
            return
        }
        let scale = 1 / total
        for i in 0..<out.count { out[i] *= scale }
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
