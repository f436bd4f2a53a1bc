import Foundation
import Testing
@testable import LabelDB

/// format-spec/storage.md: the decode arithmetic is defined (values widened to
/// double, a double total, one rounding to float), so decoders agree within one ulp whatever
/// their summation order; the compact form gives the dense form's values.
@Suite struct DecodeArithmeticTests {
    /// A reference decoder written from R-43, summing in the opposite order.
    func reference(_ indices: [Int], _ values: [Double], rest: Double, classes c: Int) -> [Float] {
        var last: [Int: Double] = [:]
        for (i, v) in zip(indices, values) { last[i] = v }
        let others = c - last.count
        var total = others > 0 ? rest : 0
        for i in last.keys.sorted().reversed() { total += last[i]! }
        let share = others > 0 ? rest / Double(others) : 0
        var out = [Float](repeating: Float(share / total), count: c)
        for (i, v) in last { out[i] = Float(v / total) }
        return out
    }

    func ulps(_ a: Float, _ b: Float) -> Int {
        Int(abs(Int64(a.bitPattern) - Int64(b.bitPattern)))
    }

    func distribution(_ c: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        var p = (0..<c).map { _ in Float(exp(Double(rng.next() % 1000) / 100)) }
        let total = p.reduce(0, +)
        p = p.map { $0 / total }
        return p
    }

    @Test("R-43/R-44: top-K f16 decodes to the double-precision reference within one ulp, in any summation order",
          arguments: [10, 1000, 65_536])
    func topK(classes c: Int) throws {
        let codec = SoftLabelCodec.topKF16(min(16, c))
        for seed in 1...5 as ClosedRange<UInt64> {
            let p = distribution(c, seed: seed)
            var bytes: [UInt8] = []
            p.withUnsafeBufferPointer { codec.encode($0, into: &bytes) }
            var out = [Float](repeating: 0, count: c)
            try bytes.withUnsafeBytes { raw in try out.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } }
            // Read the stored entries independently of the codec's reader.
            let rest = Double(Float16(bitPattern: UInt16(bytes[0]) | UInt16(bytes[1]) << 8))
            var indices: [Int] = [], values: [Double] = []
            for i in 0..<min(16, c) {
                let base = 2 + 4 * i
                indices.append(Int(UInt16(bytes[base]) | UInt16(bytes[base + 1]) << 8))
                values.append(Double(Float16(bitPattern: UInt16(bytes[base + 2]) | UInt16(bytes[base + 3]) << 8)))
            }
            let expected = reference(indices, values, rest: rest, classes: c)
            for i in 0..<c { #expect(ulps(out[i], expected[i]) <= 1, "class \(i): \(out[i]) vs \(expected[i])") }
        }
    }

    @Test("the compact form equals the dense decode within one ulp, and its leftover completes the row",
          arguments: ["topk:8:f16", "topk:8:u8", "adaptive:0.01", "dense:f16", "dense:f32"])
    func compactMatchesDense(codecText: String) throws {
        let codec = try SoftLabelCodec(parsing: codecText)
        let c = 300
        for seed in 1...5 as ClosedRange<UInt64> {
            let p = distribution(c, seed: seed)
            var bytes: [UInt8] = []
            p.withUnsafeBufferPointer { codec.encode($0, into: &bytes) }
            var dense = [Float](repeating: 0, count: c)
            try bytes.withUnsafeBytes { raw in try dense.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } }
            var classes = [Int32](repeating: 0, count: 5), probabilities = [Float](repeating: 0, count: 5)
            let leftover = try bytes.withUnsafeBytes { raw in
                try codec.decodeCompact(raw, classCount: c, k: 5, classes: &classes, probabilities: &probabilities)
            }
            for i in 0..<5 {
                #expect(classes[i] >= 0)
                #expect(ulps(probabilities[i], dense[Int(classes[i])]) <= 1, "\(codecText) rank \(i)")
            }
            let order = dense.indices.sorted { dense[$0] > dense[$1] || (dense[$0] == dense[$1] && $0 < $1) }
            #expect(Set(classes.map(Int.init)) == Set(order.prefix(5)), "\(codecText): the five most probable classes")
            #expect(abs(Double(leftover) + probabilities.reduce(0) { $0 + Double($1) } - 1) < 1e-6)
        }
    }

    @Test("R-45: a kept probability of 0 in topk:K:u8 is clamped to the smallest normal float before its log")
    func u8ZeroClamp() throws {
        let codec = SoftLabelCodec.topKU8(3)
        let p: [Float] = [0.7, 0.3, 0, 0]
        var bytes: [UInt8] = []
        p.withUnsafeBufferPointer { codec.encode($0, into: &bytes) }
        let lo = Float(Float16(bitPattern: UInt16(bytes[2]) | UInt16(bytes[3]) << 8))
        #expect(lo == Float(Float16(log(Float.leastNormalMagnitude))))
        var out = [Float](repeating: 0, count: 4)
        try bytes.withUnsafeBytes { raw in try out.withUnsafeMutableBufferPointer { try codec.decode(raw, into: $0) } }
        #expect(abs(out.reduce(0, +) - 1) < 1e-6)
        #expect(out[2] < 1e-30 && out[3] < 1e-30)
    }

    @Test("widenHalf equals Double(Float16) for every one of the 65,536 bit patterns")
    func widenHalfIsExact() {
        var wrong = 0
        for bits in 0...UInt16.max {
            let expected = Double(Float16(bitPattern: bits)), got = widenHalf(bits)
            if expected.isNaN ? !got.isNaN : expected.bitPattern != got.bitPattern { wrong += 1 }
        }
        #expect(wrong == 0)
    }
}
