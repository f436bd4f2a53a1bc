import COpenBLAS
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

    /// Row-wise softmax in place (each of `rows` rows of `columns` values), numerically stable.
    static func softmaxRows(_ z: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        for r in 0..<rows {
            let row = z + r * columns
            var m = -Float.infinity
            for j in 0..<columns { m = max(m, row[j]) }
            var sum: Float = 0
            for j in 0..<columns {
                let e = expf(row[j] - m)
                row[j] = e
                sum += e
            }
            let scale = 1 / sum
            for j in 0..<columns { row[j] *= scale }
        }
    }
}
