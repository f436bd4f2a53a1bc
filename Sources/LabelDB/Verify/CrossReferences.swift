/// The cross-checks of ``Transaction/verify()``, over what the walk of every table found: each
/// says which records must agree, and reports where they do not.
extension StoreVerifier {
    /// Samples ↔ embedding rows ↔ free slots, against the slot counter.
    mutating func checkSamplesAndEmbeddings() throws {
        let layout = tx.store.blockLayout
        let capacity = UInt64(layout.capacity)
        let next = try? tx.nextSlot()
        var owner: [UInt64: UInt64] = [:]   // slot → id
        for (id, sample) in samples.sorted(by: { $0.key < $1.key }) {
            if let next, sample.slot >= next {
                problem(.samples, "\(id)", "embedding slot \(sample.slot) was never allocated (next slot \(next))")
                continue
            }
            if let other = owner.updateValue(id, forKey: sample.slot) {
                problem(.samples, "\(id)", "shares embedding slot \(sample.slot) with sample \(other)")
            }
            let block = sample.slot / capacity, index = Int(sample.slot % capacity)
            let rowProblem: (key: String, detail: String)? = try tx.withValue(.embeddings, key: block) { bytes in
                guard let bytes else { return ("block \(block)", "missing; sample \(id) has its embedding there") }
                do { try EmbeddingBlockView(layout: layout, bytes: bytes).verifyRow(index, id: id) } catch {
                    return ("block \(block) slot \(index) (sample \(id))", Self.detail(error))
                }
                return nil
            }
            if let rowProblem { problem(.embeddings, rowProblem.key, rowProblem.detail) }
        }
        // Live slots that no sample claims.
        try tx.forEach(.embeddings) { block, bytes in
            report.blocksChecked += 1
            guard let view = try? EmbeddingBlockView(layout: layout, bytes: bytes) else { return true }   // reported by the walk
            for index in 0..<view.rowsUsed where view.isLive(index) {
                // The block number comes from a key: its slots may lie past 2^64 (the walk reports the key).
                let (base, overflow) = block.multipliedReportingOverflow(by: capacity)
                guard !overflow else { break }
                let slot = base + UInt64(index), id = view.id(at: index)
                if owner[slot] != id && !damagedSamples.contains(id) {
                    problem(.embeddings, "block \(block) slot \(index)", "live slot for id \(id) that no sample record points to")
                }
            }
            return true
        }
        for slot in freeSlots {
            if let id = owner[slot] { problem(.freeSlots, "\(slot)", "free slot is in use by sample \(id)") }
            if let next, slot >= next { problem(.freeSlots, "\(slot)", "free slot was never allocated (next slot \(next))") }
        }
    }

    /// The tag registry in both directions, interned labels, partitions and their count, and the
    /// content index.
    mutating func checkTaint() {
        for (name, id) in tagNames where tagIDs[id] != name {
            problem(.taintTags, "n\(name)", "names tag id \(id), whose entry names \(tagIDs[id].map { "`\($0)`" } ?? "nothing")")
        }
        for (id, name) in tagIDs where tagNames[name] != id {
            problem(.taintTags, "i\(id)", "names `\(name)`, whose entry names \(tagNames[name].map { "id \($0)" } ?? "nothing")")
        }
        for (id, label) in taintLabels {
            if let unknown = (label.secrecy + label.integrity).first(where: { tagIDs[$0] == nil }) {
                problem(.taintLabels, "\(id)", "names tag id \(unknown), which is not registered")
            }
            if label.secrecy != label.secrecy.sorted() || label.integrity != label.integrity.sorted() {
                problem(.taintLabels, "\(id)", "tag ids are not in ascending order")
            }
        }
        // Partitions: exactly one entry per sample whose label is not 0, naming that label.
        var tainted = samples.filter { $0.value.taint != 0 }.mapValues(\.taint)
        for (id, sample) in samples where sample.taint != 0 && taintLabels[sample.taint] == nil {
            problem(.samples, "\(id)", "taint label id \(sample.taint) is not interned")
        }
        for entry in partitions {
            if tainted[entry.sample] == entry.label {
                tainted[entry.sample] = nil
            } else if !damagedSamples.contains(entry.sample) {
                let carries = samples[entry.sample].map { "the sample carries label \($0.taint)" } ?? "no such sample"
                problem(.taintMembers, "label \(entry.label) sample \(entry.sample)", carries)
            }
        }
        if !tainted.isEmpty {
            problem(.taintMembers, "*", "\(tainted.count) tainted samples are missing from their partitions (e.g. \(tainted.keys.min()!))")
        }
        do {
            if let recorded = try tx.recordedPartitionCount(), recorded != partitions.count {
                problem(.meta, MetaKey.taintedSamples, "records \(recorded) partition entries; the table holds \(partitions.count)")
            }
        } catch {
            problem(.meta, MetaKey.taintedSamples, Self.detail(error))
        }
        // The content index: one entry per interned label, naming a record of that content.
        var indexed = Set<UInt32>()
        for (key, id) in contentIndex {
            if let label = taintLabels[id], TaintLabelRecord.contentKey(secrecy: label.secrecy, integrity: label.integrity) == key {
                indexed.insert(id)
            } else {
                problem(.taintLabelIndex, "label \(id)", "names a label record of other content, or none")
            }
        }
        for id in taintLabels.keys where !indexed.contains(id) {
            problem(.taintLabelIndex, "label \(id)", "the interned label has no content-index entry")
        }
    }

    /// Label sets ↔ versions ↔ rows ↔ samples, and the class index against the rows (R-19).
    /// The table label rows are in, as reports name it.
    var rowsTable: Table { layoutVersion >= 6 ? .labelBlocks : .labels }

    mutating func checkLabels() {
        let countsExact = (try? !tx.labelledCountsPending) ?? false
        // A latest version beyond the records there are is damage, and must not size the checks below.
        for (id, set) in labelSets where set.record.latest > labelVersions.count {
            problem(.labelSets, set.name, "latest version \(set.record.latest), but only \(labelVersions.count) version records exist")
            labelSets[id] = nil
        }
        for (id, set) in labelSets {
            // A set whose rows are all gone must count no labelled sample.
            if countsExact && labelRows[id] == nil {
                for version in stride(from: 1, through: set.record.latest, by: 1) {
                    if let recorded = labelVersions[Self.pair(id, UInt32(version))]?.labelled, recorded != 0 {
                        problem(.labelVersions, "\(set.name)@\(version)", "records \(recorded) labelled samples; the set has no rows")
                    }
                }
            }
            for version in 1...max(set.record.latest, 1) where set.record.latest >= 1 && labelVersions[Self.pair(id, UInt32(version))] == nil {
                problem(.labelVersions, "\(set.name)@\(version)", "missing (the set's latest version is \(set.record.latest))")
            }
        }
        var rowsPerVersion: [UInt64: Int] = [:]
        var expectedIndex: [[UInt8]: UInt32] = [:]
        var expectedPostings: [UInt64: Set<Posting>] = [:]
        for (setID, samplesOfSet) in labelRows {
            guard let set = labelSets[setID] else {
                problem(rowsTable, "set \(setID)", "\(samplesOfSet.count) samples have rows of a label set id that has no record")
                continue
            }
            let labelled = LabelledCounts.counts(firstVersions: samplesOfSet.values.compactMap { $0.first.map { Int($0.version) } }, latest: set.record.latest)
            for (version, count) in labelled.enumerated() where countsExact {
                // A dropped version's count is history: its superseded rows are gone (R-54).
                if let record = labelVersions[Self.pair(setID, UInt32(version + 1))], !record.dropped, case let recorded = record.labelled, recorded != count {
                    problem(.labelVersions, "\(set.name)@\(version + 1)", "records \(recorded) labelled samples; the rows label \(count)")
                }
            }
            for (sample, rows) in samplesOfSet {
                if samples[sample] == nil && !damagedSamples.contains(sample) {
                    problem(rowsTable, "\(set.name) sample \(sample)", "rows of a sample that is not stored")
                }
                for (i, row) in rows.enumerated() {
                    rowsPerVersion[Self.pair(setID, row.version), default: 0] += 1
                    if row.version < 1 || Int(row.version) > set.record.latest {
                        problem(rowsTable, "\(set.name)@\(row.version) sample \(sample)", "row of a version the set does not have (latest \(set.record.latest))")
                    }
                    guard let (classIndex, confidence) = row.top1 else { continue }
                    if let slot = samples[sample]?.slot {
                        expectedPostings[Self.pair(setID, row.version), default: []].insert(Posting(classIndex: UInt32(classIndex), slot: slot))
                    }
                    let key = LabelRecord.indexKey(set: setID, classIndex: UInt32(classIndex), confidence: confidence, sample: sample, from: row.version)
                    expectedIndex[key] = i + 1 < rows.count ? rows[i + 1].version : LabelRecord.openEnded
                }
            }
        }
        for (key, rows) in rowsPerVersion {
            if let recorded = labelVersions[key]?.rows, rows > recorded {
                problem(rowsTable, "set \(key >> 32) v\(key & 0xFFFF_FFFF)", "\(rows) rows, but the version record says the import wrote \(recorded)")
            }
        }
        if layoutVersion >= 6 {
            checkPostings(expected: expectedPostings)
            return
        }
        for (key, until) in expectedIndex where indexEntries[key] != until {
            let described = key.withUnsafeBytes { "set \(BigEndianKey.u32($0, at: 0)) sample \(BigEndianKey.u64($0, at: 12)) v\(BigEndianKey.u32($0, at: 20))" }
            problem(.labelIndex, described, indexEntries[key] == nil ? "missing for its label row" : "until-version \(indexEntries[key]!), expected \(until)")
        }
        for key in indexEntries.keys where expectedIndex[key] == nil {
            let described = key.withUnsafeBytes { "set \(BigEndianKey.u32($0, at: 0)) sample \(BigEndianKey.u64($0, at: 12)) v\(BigEndianKey.u32($0, at: 20))" }
            problem(.labelIndex, described, "no label row gives this entry")
        }
    }

    /// The class postings against the rows (§10.5): one posting per row with a top-1 class, in
    /// the chunk of its set, class and version, and no other. Skipped while a migration has not
    /// built them yet (filters scan the rows until then).
    mutating func checkPostings(expected: [UInt64: Set<Posting>]) {
        guard (try? tx.packedLabels) == true else { return }
        for pair in Set(expected.keys).union(postings.keys) {
            let want = expected[pair] ?? [], have = postings[pair] ?? []
            let described = "set \(pair >> 32) v\(pair & 0xFFFF_FFFF)"
            for missing in want.subtracting(have).sorted(by: { $0.slot < $1.slot }).prefix(8) {
                problem(.labelPostings, "\(described) slot \(missing.slot)", "no posting for the row's top-1 class \(missing.classIndex)")
            }
            for extra in have.subtracting(want).sorted(by: { $0.slot < $1.slot }).prefix(8) {
                problem(.labelPostings, "\(described) class \(extra.classIndex) slot \(extra.slot)", "no label row gives this posting")
            }
        }
    }

    /// Projectors ↔ versions ↔ parameters ↔ heads ↔ corrections.
    mutating func checkProjectors() {
        for (name, taint) in heads where taint != 0 && taintLabels[taint] == nil {
            problem(.heads, name, "taint label id \(taint) is not interned")
        }
        var known = Set<UInt64>()
        for (id, projector) in projectors where projector.record.latest > projectorVersions.count {
            problem(.projectors, projector.name, "latest version \(projector.record.latest), but only \(projectorVersions.count) version records exist")
            projectors[id] = nil
        }
        for (id, projector) in projectors {
            for version in stride(from: 1, through: projector.record.latest, by: 1) {
                let key = Self.pair(id, UInt32(version))
                known.insert(key)
                guard let record = projectorVersions[key] else {
                    problem(.projectorVersions, "\(projector.name)@\(version)", "missing (the projector's latest version is \(projector.record.latest))")
                    continue
                }
                if !parameters.contains(key) { problem(.projectorParameters, "\(projector.name)@\(version)", "missing") }
                if let head = record.head, heads[head] == nil { problem(.projectorVersions, "\(projector.name)@\(version)", "names head `\(head)`, which is not stored") }
            }
        }
        for key in projectorVersions.keys where !known.contains(key) {
            problem(.projectorVersions, "projector \(key >> 32) v\(key & 0xFFFF_FFFF)", "a version of no projector record")
        }
        for key in parameters where !known.contains(key) {
            problem(.projectorParameters, "projector \(key >> 32) v\(key & 0xFFFF_FFFF)", "parameters of no projector version")
        }
        for correction in corrections where !known.contains(Self.pair(correction.id, correction.version)) {
            problem(.projectorCorrections, "projector \(correction.id) v\(correction.version) sample \(correction.sample)", "a correction of no projector version")
        }
        for key in fitted where !known.contains(key) {
            problem(.projectorFitted, "projector \(key >> 32) v\(key & 0xFFFF_FFFF)", "fitted samples of no projector version")
        }
    }

    /// LMDB's two meta pages (read from the file: LMDB shows only the one it chose).
    mutating func checkMetaPages() {
        if let detail = DataFileCheck.metaPageProblem(directory: tx.store.path) {
            report.problems.append(.init(table: "data.mdb", key: "meta", detail: detail))
        }
    }

    /// The provenance log's hash chain.
    mutating func checkProvenance() throws {
        let log = try tx.verifyProvenanceLog()
        // A record the walk found damaged is reported once.
        if let bad = log.firstBad, !report.problems.contains(where: { $0.table == Table.provenance.rawValue && $0.key == "\(bad.id)" }) {
            problem(.provenance, "\(bad.id)", bad.reason)
        }
    }
}

/// One class posting as the verifier compares them: a top-1 class and the slot of a sample.
struct Posting: Hashable {
    let classIndex: UInt32
    let slot: UInt64
}
