import CLabelDB
import LabelDB

/// Reads a C `ldb_batch` into the library's request and buffers.
enum BatchTranslation {
    static func translate(_ batch: ldb_batch, rows: Int) throws -> (BatchRequest, BatchBuffers) {
        var request = BatchRequest()
        request.embeddings = batch.embeddings != 0
        request.metadata = batch.metadata != 0
        request.payloads = batch.payloads != 0
        request.taints = batch.taints != 0
        request.labels = try names(batch.labels, batch.label_count, "labels").map { try LabelSetReference(parsing: $0) }
        request.regenerate = try names(batch.regen, batch.regen_count, "regen").map { try ProjectorReference(parsing: $0) }
        switch batch.soft_form {
        case Int32(LDB_SOFT_NONE): request.soft = .none
        case Int32(LDB_SOFT_DENSE): request.soft = .dense
        case Int32(LDB_SOFT_COMPACT):
            guard batch.compact_k >= 0 else { throw APIError.badInput("ldb_get_many: compact_k must be ≥ 0 (0: the codec's K)") }
            request.soft = .compact(k: batch.compact_k == 0 ? nil : Int(batch.compact_k))
        default: throw APIError.badInput("ldb_get_many: soft_form must be LDB_SOFT_NONE, LDB_SOFT_DENSE or LDB_SOFT_COMPACT, not \(batch.soft_form)")
        }
        var buffers = BatchBuffers()
        buffers.found = batch.found
        buffers.embeddings = batch.embedding
        buffers.metadataOffsets = batch.metadata_offsets
        buffers.payloadOffsets = batch.payload_offsets
        buffers.taints = batch.taint_index
        if batch.label_count > 0 {
            guard let columns = batch.label_columns else { throw APIError.badInput("ldb_get_many: label_columns is NULL but \(batch.label_count) label sets were asked for") }
            buffers.labels = (0..<batch.label_count).map { i in
                let c = columns[i]
                var out = LabelBuffers()
                out.version = c.version
                out.hard = c.hard
                out.dense = c.dense
                out.topClasses = c.top_classes
                out.topProbabilities = c.top_probabilities
                out.leftover = c.leftover
                return out
            }
        }
        if batch.regen_count > 0 {
            guard let columns = batch.regen_columns else { throw APIError.badInput("ldb_get_many: regen_columns is NULL but \(batch.regen_count) projectors were asked for") }
            buffers.regenerated = (0..<batch.regen_count).map { i in
                var out = RegeneratedBuffers()
                out.probabilities = columns[i].probabilities
                out.status = columns[i].status
                return out
            }
        }
        _ = rows
        return (request, buffers)
    }

    /// `count` C strings, each present.
    private static func names(_ pointer: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int, _ what: String) throws -> [String] {
        guard count > 0 else { return [] }
        guard let pointer else { throw APIError.badInput("ldb_get_many: \(what) is NULL but its count is \(count)") }
        return try (0..<count).map { i in
            guard let name = pointer[i] else { throw APIError.badInput("ldb_get_many: \(what)[\(i)] is NULL") }
            return String(cString: name)
        }
    }
}
