import COpenBLAS
import CLabelDBKernels
import Foundation

/// Thin, checked wrappers over the BLAS and LAPACK calls the projector code makes. Matrices are
/// row-major `[Float]` arrays unless a comment says otherwise.
enum LinearAlgebra {
    /// C = alpha · op(A) · op(B) + beta · C, row-major. The corresponding call is `cblas_sgemm`.
    static func gemm(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0
    ) {
        let lda = transA ? m : k
        let ldb = transB ? k : n
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(n))
    }

    /// Solves (G) · X = B for symmetric positive definite G (n × n), in place: on return `rhs`
    /// (n × nrhs in column-major order, i.e. nrhs × n row-major) holds X.
    /// The corresponding calls are `spotrf` and `spotrs`.
    ///
    /// - Returns: false when G is not positive definite.
    static func choleskySolve(_ g: inout [Float], n: Int, rhs: inout [Float], nrhs: Int) -> Bool {
        var info: Int32 = 0
        var n32 = Int32(n), lda = Int32(n), nrhs32 = Int32(nrhs), ldb = Int32(n)
        var uplo = CChar(UInt8(ascii: "L"))
        spotrf_(&uplo, &n32, &g, &lda, &info, 1)
        guard info == 0 else { return false }
        spotrs_(&uplo, &n32, &nrhs32, g, &lda, &rhs, &ldb, &info, 1)
        return info == 0
    }

    /// Eigen-decomposition of a symmetric n × n matrix (in place): returns the eigenvalues in
    /// ascending order; on return row k of `a` (row-major view) is the k-th eigenvector.
    /// The corresponding call is `ssyevd`.
    static func symmetricEigen(_ a: inout [Float], n: Int) -> [Float]? {
        var values = [Float](repeating: 0, count: n)
        var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "L"))
        var n32 = Int32(n), lda = Int32(n), info: Int32 = 0
        var workSize: Float = 0, iworkSize: Int32 = 0
        var query: Int32 = -1
        ssyevd_(&jobz, &uplo, &n32, &a, &lda, &values, &workSize, &query, &iworkSize, &query, &info, 1, 1)
        guard info == 0 else { return nil }
        var lwork = Int32(workSize) + 1, liwork = iworkSize
        var work = [Float](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        ssyevd_(&jobz, &uplo, &n32, &a, &lda, &values, &work, &lwork, &iwork, &liwork, &info, 1, 1)
        return info == 0 ? values : nil
    }

    /// Row-wise softmax((z + bias) · scale) in place (each of `rows` rows of `columns` values),
    /// numerically stable. Rows are split across the cores; each row is processed 8 lanes at a time.
    /// With `topK` > 0, also writes each row's `topK` most probable classes (descending, ties to the
    /// smaller class) and their probabilities into `topClasses` / `topProbabilities`.
    static func softmaxRows(
        _ z: UnsafeMutablePointer<Float>, rows: Int, columns: Int, bias: UnsafePointer<Float>? = nil, scale: Float = 1,
        topK: Int = 0, topClasses: UnsafeMutablePointer<Int32>? = nil, topProbabilities: UnsafeMutablePointer<Float>? = nil,
        kernel: Bool = true
    ) {
        let chunks = min(rows, max(1, ProcessInfo.processInfo.activeProcessorCount))
        guard chunks > 0 else { return }
        // Pointers cross into the worker closures as addresses; each chunk touches its own rows only.
        let zAddress = UInt(bitPattern: z), biasAddress = UInt(bitPattern: bias)
        let classesAddress = UInt(bitPattern: topClasses), probsAddress = UInt(bitPattern: topProbabilities)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let base = UnsafeMutablePointer<Float>(bitPattern: zAddress)!
            let b = UnsafePointer<Float>(bitPattern: biasAddress)
            let classes = UnsafeMutablePointer<Int32>(bitPattern: classesAddress)
            let probs = UnsafeMutablePointer<Float>(bitPattern: probsAddress)
            let start = rows * chunk / chunks, end = rows * (chunk + 1) / chunks
            if kernel {
                // The C kernel, built for this CPU's widest vectors (CLabelDBKernels).
                let k = classes != nil && probs != nil ? topK : 0
                ldb_softmax_rows(base + start * columns, end - start, columns, b, scale, k,
                                 classes.map { $0 + start * topK }, probs.map { $0 + start * topK })
                return
            }
            for r in start..<end {
                let row = base + r * columns
                softmaxRow(row, columns, bias: b, scale: scale)
                if topK > 0, let classes, let probs {
                    selectTop(row, columns, k: topK, classes: classes + r * topK, probabilities: probs + r * topK)
                }
            }
        }
    }

    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ n: Int, bias: UnsafePointer<Float>? = nil, scale: Float = 1) {
        let raw = UnsafeMutableRawPointer(row)
        let vectorEnd = n & ~7
        // Pass 1: apply bias and scale, find the maximum.
        var m8 = SIMD8<Float>(repeating: -.infinity)
        var j = 0
        while j < vectorEnd {
            var v = raw.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
            if let bias { v += UnsafeRawPointer(bias).loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) }
            v *= scale
            raw.storeBytes(of: v, toByteOffset: 4 * j, as: SIMD8<Float>.self)
            m8 = m8.replacing(with: v, where: v .> m8)
            j += 8
        }
        var m = m8.max()
        while j < n {
            row[j] = (row[j] + (bias?[j] ?? 0)) * scale
            m = max(m, row[j])
            j += 1
        }
        // Pass 2: exponentials and their sum.
        var sum8 = SIMD8<Float>(repeating: 0)
        let m8b = SIMD8<Float>(repeating: m)
        j = 0
        while j < vectorEnd {
            let v = expVector(raw.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) - m8b)
            raw.storeBytes(of: v, toByteOffset: 4 * j, as: SIMD8<Float>.self)
            sum8 += v
            j += 8
        }
        var sum = sum8.sum()
        while j < n {
            let e = expf(row[j] - m)
            row[j] = e
            sum += e
            j += 1
        }
        // Pass 3: normalise.
        let inverse = SIMD8<Float>(repeating: 1 / sum)
        j = 0
        while j < vectorEnd {
            raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) * inverse, toByteOffset: 4 * j, as: SIMD8<Float>.self)
            j += 8
        }
        while j < n { row[j] *= inverse[0]; j += 1 }
    }

    /// The k largest values of a row (descending, ties to the smaller index), by insertion into a
    /// small sorted list; the current k-th largest stays in a register, so most values cost one
    /// comparison.
    @inline(__always)
    static func selectTop(_ row: UnsafePointer<Float>, _ n: Int, k: Int, classes: UnsafeMutablePointer<Int32>, probabilities: UnsafeMutablePointer<Float>) {
        var count = 0
        var threshold = -Float.infinity
        for j in 0..<n {
            let v = row[j]
            if count == k && !(v > threshold) { continue }
            var position = min(count, k - 1)
            if count < k { count += 1 }
            while position > 0 && v > probabilities[position - 1] {
                probabilities[position] = probabilities[position - 1]
                classes[position] = classes[position - 1]
                position -= 1
            }
            probabilities[position] = v
            classes[position] = Int32(j)
            if count == k { threshold = probabilities[k - 1] }
        }
    }

    /// e^x for x ≤ 0, eight at a time: x = k·ln2 + f with |f| ≤ ln2/2, e^f by a degree-6
    /// polynomial (relative error below 2e-7), 2^k through the exponent bits. Inputs below −87
    /// give 0 (softmax terms that small vanish in f32 anyway). Rounding to k uses the 1.5·2²³
    /// trick so that everything stays in vector registers (no per-lane conversions).
    @inline(__always)
    static func expVector(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let clamped = x.replacing(with: -87, where: x .< -87)
        let magic = SIMD8<Float>(repeating: 12_582_912)   // 1.5 · 2²³
        let t = clamped * 1.442695040888963 + magic
        let k = t - magic
        let f = clamped - k * 0.693145751953125 - k * 1.428606765330187e-06
        var p = SIMD8<Float>(repeating: 1.0 / 720)
        p = p * f + 1.0 / 120
        p = p * f + 1.0 / 24
        p = p * f + 1.0 / 6
        p = p * f + 0.5
        p = p * f + 1
        p = p * f + 1
        // The low bits of t's pattern hold k (two's complement): add the bias, shift into the exponent.
        let kBits = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let scale = unsafeBitCast((kBits &+ 127) &<< 23, to: SIMD8<Float>.self)
        return (p * scale).replacing(with: 0, where: x .< -87)
    }
}
