/// One embedding block during a scan: up to `rowsPerBlock` consecutive slots, as a row-major
/// `rowCount × dimension` float matrix that can go straight to BLAS.
///
/// Lifetime: valid only during the call to the scan's closure. For `f32` stores `floats` points
/// into LMDB's map (no copy); for `f16` stores it points to a scratch buffer converted per block
/// (OpenBLAS has no f16 GEMM).
public struct EmbeddingBlockRows {
    /// The block number (slot / rows per block).
    public let block: UInt64
    /// Rows in the matrix, live or not. Rows that are not live (free, or holding a sample the
    /// clearance does not admit) are all zeros.
    public let rowCount: Int
    /// Elements per row.
    public let dimension: Int
    /// `rowCount × dimension` floats, row-major.
    public let floats: UnsafeBufferPointer<Float>
    let view: EmbeddingBlockView
    let visibility: SampleVisibility

    /// The sample id in row `index` (meaningful only when ``isLive(_:)``).
    public func id(at index: Int) -> UInt64 { view.id(at: index) }
    func with(_ floats: UnsafeBufferPointer<Float>) -> EmbeddingBlockRows {
        EmbeddingBlockRows(block: block, rowCount: rowCount, dimension: dimension, floats: floats, view: view, visibility: visibility)
    }

    /// True when row `index` holds a sample the clearance admits.
    public func isLive(_ index: Int) -> Bool { view.isLive(index) && visibility.admits(view.id(at: index)) }
}

extension Transaction {
    /// Walks every embedding block in slot order, passing each as a float matrix. Rows of samples
    /// the clearance does not admit are zeroed and not live.
    ///
    /// - Parameter verifyChecksums: check every live row's checksum and the block header's
    ///   (the default); pass false only when the caller verifies otherwise.
    /// - Throws: ``StoreError/checksumMismatch(store:table:key:expected:found:)`` on damaged rows.
    public func forEachEmbeddingBlock(verifyChecksums: Bool = true, _ body: (EmbeddingBlockRows) throws -> Void) throws {
        let layout = store.blockLayout
        let visibility = try sampleVisibility()
        var scratch: [Float] = []
        try forEach(.embeddings) { block, bytes in
            let view: EmbeddingBlockView
            do {
                view = try EmbeddingBlockView(layout: layout, bytes: bytes)
                if verifyChecksums {
                    try view.verifyHeader(block: block)
                    for index in 0..<view.rowsUsed where view.isLive(index) {
                        try view.verifyRow(index, id: view.id(at: index))
                    }
                }
            } catch {
                throw contextualize(error, table: .embeddings, key: "block \(block)")
            }
            let count = view.rowsUsed * layout.dimension
            let matrix = view.matrix
            // Rows of invisible samples must not reach the caller, not even as matrix bytes.
            var hiddenRows: [Int] = []
            if case .all = visibility {} else {
                hiddenRows = (0..<view.rowsUsed).filter { view.isLive($0) && !visibility.admits(view.id(at: $0)) }
            }
            let rows = EmbeddingBlockRows(block: block, rowCount: view.rowsUsed, dimension: layout.dimension, floats: UnsafeBufferPointer(start: nil, count: 0), view: view, visibility: visibility)
            if hiddenRows.isEmpty, layout.elementType == .f32, Int(bitPattern: matrix.baseAddress) % MemoryLayout<Float>.alignment == 0 {
                // safe: the matrix holds exactly rowsUsed × dimension f32 values, checked by EmbeddingBlockView,
                // and its address is Float-aligned (checked just above).
                let floats = UnsafeBufferPointer(start: matrix.baseAddress!.assumingMemoryBound(to: Float.self), count: count)
                try body(rows.with(floats))
            } else {
                if scratch.count < count { scratch = [Float](repeating: 0, count: count) }
                try scratch.withUnsafeMutableBufferPointer { out in
                    ElementEncoding.load(matrix, count: count, as: layout.elementType, into: out.baseAddress!)
                    for row in hiddenRows {
                        (out.baseAddress! + row * layout.dimension).update(repeating: 0, count: layout.dimension)
                    }
                    try body(rows.with(UnsafeBufferPointer(start: out.baseAddress, count: count)))
                }
            }
            return true
        }
    }
}
