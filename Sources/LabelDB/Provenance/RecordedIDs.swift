import Foundation

/// The ids a write deleted or relabelled, as the parameters of its provenance record, so `audit`
/// can say which steps changed a sample's taint label and which one removed it (issue 17).
///
/// Parameter `KIND_ids` lists them as ascending runs, `3,7-11,20` (ids in decimal), when there
/// are at most ``maximumRuns`` runs; a longer list is kept as `KIND_ids_xxh3` (xxh3-128 of the
/// ascending ids' 8-byte big-endian forms, concatenated), `KIND_ids_count` and `KIND_ids_range`
/// (`first-last`), which can confirm a list given later but not answer membership alone.
enum RecordedIDs {
    /// Runs kept verbatim; a list with more becomes a digest (a record stays under ~100 KB).
    static let maximumRuns = 4096

    /// What a record says about one id.
    enum Membership: Equatable {
        /// The record lists the id.
        case listed
        /// The record keeps a digest of a list whose range holds the id: it may be in it.
        case possibly(count: Int)
        /// The record does not touch the id (or records no ids of that kind).
        case absent
    }

    /// The parameters recording `ids` (any order, repeats allowed) under `kind`.
    static func parameters(kind: String, ids: [UInt64]) -> [String: String] {
        let sorted = Array(Set(ids)).sorted()
        guard let first = sorted.first, let last = sorted.last else { return [:] }
        var runs: [(UInt64, UInt64)] = []
        for id in sorted {
            if let end = runs.last?.1, end &+ 1 == id { runs[runs.count - 1].1 = id } else { runs.append((id, id)) }
        }
        if runs.count <= maximumRuns {
            return ["\(kind)_ids": runs.map { $0.0 == $0.1 ? "\($0.0)" : "\($0.0)-\($0.1)" }.joined(separator: ",")]
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sorted.count * 8)
        for id in sorted { BigEndianKey.append(id, to: &bytes) }
        return ["\(kind)_ids_xxh3": Checksum.xxh3_128Hex(bytes), "\(kind)_ids_count": "\(sorted.count)", "\(kind)_ids_range": "\(first)-\(last)"]
    }

    /// Whether `parameters` record `id` under `kind`. Malformed text (the log is untrusted) reads as absent.
    static func membership(of id: UInt64, kind: String, in parameters: [String: String]) -> Membership {
        if let list = parameters["\(kind)_ids"] {
            for run in list.split(separator: ",") {
                let parts = run.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
                let ends = parts.compactMap { UInt64($0) }
                // A run is one id or lo-hi with lo ≤ hi; anything else is not a run.
                guard ends.count == parts.count, let lo = ends.first, let hi = ends.last, lo <= hi else { continue }
                if lo <= id && id <= hi { return .listed }
            }
            return .absent
        }
        if let range = parameters["\(kind)_ids_range"]?.split(separator: "-", maxSplits: 1).compactMap({ UInt64($0) }), range.count == 2,
           range[0] <= id, id <= range[1] {
            return .possibly(count: Int(parameters["\(kind)_ids_count"] ?? "") ?? 0)
        }
        return .absent
    }

    /// True for the parameters this type writes (audit shows the others as the step's parameters).
    static func isRecordedIDs(_ key: String) -> Bool {
        key.hasSuffix("_ids") || key.contains("_ids_")
    }
}
