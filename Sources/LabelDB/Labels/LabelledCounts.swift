/// Each label-set version records how many samples have a label in it (`labelled`). The count is
/// kept exact — imports add, deletes take away — so that a full read of a version can be checked
/// against it: a damaged B-tree that makes a walk skip rows is reported instead of returning a
/// silently shorter answer (format-spec/storage.md R-40).
enum LabelledCounts {
    /// `labelled` for versions 1…latest, from each labelled sample's first row version: a sample
    /// first labelled in version f counts in every version from f on.
    static func counts(firstVersions: some Sequence<Int>, latest: Int) -> [Int] {
        // `latest` comes from a checked record (0 ≤ latest < 2^32), so this cannot overflow.
        guard latest >= 1 else { return [] }
        var starts = [Int](repeating: 0, count: latest + 2)
        for first in firstVersions where first >= 1 && first <= latest { starts[first] += 1 }
        var out: [Int] = []
        var running = 0
        for version in 1...latest {
            running += starts[version]
            out.append(running)
        }
        return out
    }
}

extension Transaction {
    /// True when the `labelled` counts cannot be trusted yet: a format-4 store (opened read-only,
    /// not migrated), or a migration whose recount has not committed.
    var labelledCountsPending: Bool {
        get throws {
            if store.formatVersion < 5 { return true }
            return try withValue(.meta, name: MetaKey.recountLabelled) { $0 != nil }
        }
    }

    /// Throws unless a complete walk of `set@version` that met `walked` labelled samples — visible
    /// or not: the walk passes over hidden rows too — agrees with the version's `labelled` count.
    /// Under a clearance that does not see everything the message gives no numbers (the count is
    /// a redacted statistic there).
    func checkLabelledCount(_ walked: Int, set: LabelSet, version: Int) throws {
        guard version >= 1, version <= set.latest, try !labelledCountsPending else { return }
        let recorded = try labelSetVersion(set: set.id, version: UInt32(version), name: set.name).labelled
        guard walked != recorded else { return }
        let counts = try seesEverything ? "\(walked) labelled samples read, the version records \(recorded); " : ""
        throw StoreError.corruptRecord(store: store.path, table: try labelRowsTable.rawValue, key: "\(set.name)@\(version)",
                                       detail: "\(counts)the rows disagree with the recorded count; the store may be damaged: run verify")
    }
}

extension WriteTransaction {
    /// Takes deleted samples out of the `labelled` counts: `firstVersions[set]` lists, for each
    /// deleted sample with rows in that set, the version of its first row.
    func lowerLabelledCounts(_ firstVersions: [UInt32: [Int]]) throws {
        for (setID, firsts) in firstVersions {
            guard let set = try labelSets().first(where: { $0.id == setID }) else { continue }
            let removed = LabelledCounts.counts(firstVersions: firsts, latest: set.latest)
            for version in 1...max(set.latest, 1) where set.latest >= 1 && removed[version - 1] > 0 {
                var record = try labelSetVersion(set: setID, version: UInt32(version), name: set.name)
                record.labelled -= removed[version - 1]
                let key = LabelRecord.versionKey(set: setID, version: UInt32(version))
                try put(.labelVersions, key: key, bytes: LabelRecord.encodeJSON(record, key: key))
            }
        }
    }

    /// Sets every version's `labelled` to the number of samples labelled in it now (migrating to
    /// format 5: earlier formats did not lower the counts on delete).
    func recountLabelled() throws {
        for set in try labelSets() {
            var firsts: [Int] = []
            var prefix: [UInt8] = []
            BigEndianKey.append(set.id, to: &prefix)
            var last: UInt64? = nil
            try walk(.labels, from: prefix) { key, _ in
                guard key.prefix(4).elementsEqual(prefix) else { return false }
                guard key.count == 16 else { throw damagedKey(key.count, expected: 16, in: .labels) }
                let sample = BigEndianKey.u64(key, at: 4)
                // Rows of a sample are consecutive, oldest version first.
                if sample != last { firsts.append(Int(BigEndianKey.u32(key, at: 12))) }
                last = sample
                return true
            }
            let counts = LabelledCounts.counts(firstVersions: firsts, latest: set.latest)
            for version in 1...max(set.latest, 1) where set.latest >= 1 {
                var record = try labelSetVersion(set: set.id, version: UInt32(version), name: set.name)
                guard record.labelled != counts[version - 1] else { continue }
                record.labelled = counts[version - 1]
                let key = LabelRecord.versionKey(set: set.id, version: UInt32(version))
                try put(.labelVersions, key: key, bytes: LabelRecord.encodeJSON(record, key: key))
            }
        }
    }
}
