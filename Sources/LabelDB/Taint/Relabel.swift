/// A change to samples' taint labels. Adding secrecy and removing integrity only restrict the
/// data further and need no privilege; removing secrecy (declassify) and adding integrity
/// (endorse) do, one privilege per tag.
public struct TaintChange: Hashable, Sendable {
    /// Secrecy tags to add.
    public var addSecrecy: Set<String>
    /// Secrecy tags to remove (declassify): each needs its privilege.
    public var removeSecrecy: Set<String>
    /// Integrity tags to add (endorse): each needs its privilege.
    public var addIntegrity: Set<String>
    /// Integrity tags to remove.
    public var removeIntegrity: Set<String>

    /// A change.
    public init(addSecrecy: Set<String> = [], removeSecrecy: Set<String> = [], addIntegrity: Set<String> = [], removeIntegrity: Set<String> = []) {
        self.addSecrecy = addSecrecy
        self.removeSecrecy = removeSecrecy
        self.addIntegrity = addIntegrity
        self.removeIntegrity = removeIntegrity
    }

    /// The provenance activity: `declassify` when secrecy is removed, else `endorse` when
    /// integrity is added, else `relabel`.
    public var activity: String {
        !removeSecrecy.isEmpty ? "declassify" : !addIntegrity.isEmpty ? "endorse" : "relabel"
    }

    /// `label` with the change applied.
    public func applied(to label: TaintLabel) -> TaintLabel {
        guard case .tags(var secrecy) = label.secrecy, case .tags(var integrity) = label.integrity else { return label }
        secrecy.formUnion(addSecrecy)
        secrecy.subtract(removeSecrecy)
        integrity.formUnion(addIntegrity)
        integrity.subtract(removeIntegrity)
        return TaintLabel(secrecy: secrecy, integrity: integrity)
    }

    /// Throws unless `privileges` cover every integrity tag of `labels`: writing data that
    /// carries an integrity tag vouches for it, which is an endorsement whatever the path
    /// (sample import, label import, head import, relabel).
    ///
    /// - Throws: ``TaintError/missingPrivilege(tag:action:)`` naming the first such tag.
    static func checkEndorsement(_ labels: Set<TaintLabel>, privileges: Set<String>) throws {
        for label in labels {
            guard case .tags(let integrity) = label.integrity else {
                throw TaintError.malformedLabel("a written label names its integrity tags; `*` (every tag) cannot be written")
            }
            if let tag = integrity.sorted().first(where: { !privileges.contains($0) }) {
                throw TaintError.missingPrivilege(tag: tag, action: "write data with the integrity tag (endorse)")
            }
        }
    }

    /// True when the change can make data more restrictive (so what was derived from it must follow).
    var restricts: Bool { !addSecrecy.isEmpty || !removeIntegrity.isEmpty }

    /// True when the change can make data less restrictive (declassify, endorse).
    var lowers: Bool { !removeSecrecy.isEmpty || !addIntegrity.isEmpty }

    /// Checks every tag name and that `privileges` cover every declassified and endorsed tag.
    func check(privileges: Set<String>) throws {
        for tag in addSecrecy.union(removeSecrecy).union(addIntegrity).union(removeIntegrity) {
            _ = try TaintTags.validated(tag, in: tag)
        }
        if let tag = removeSecrecy.sorted().first(where: { !privileges.contains($0) }) {
            throw TaintError.missingPrivilege(tag: tag, action: "remove the secrecy tag (declassify)")
        }
        if let tag = addIntegrity.sorted().first(where: { !privileges.contains($0) }) {
            throw TaintError.missingPrivilege(tag: tag, action: "add the integrity tag (endorse)")
        }
    }
}

extension WriteTransaction {
    /// Changes the taint labels of samples `ids`, which must be stored and visible under the
    /// transaction's clearance, and logs the change (`relabel`, `declassify` or `endorse`) with
    /// the privileges used.
    ///
    /// Labels stored in label sets follow at once (their taint is computed from the sample's on
    /// read). Projectors fitted on a sample whose label became more restrictive have the added
    /// secrecy joined into (and the removed integrity taken out of) their own label, so
    /// regenerated labels stay conservative; a declassify does not lower a projector's label.
    ///
    /// - Throws: ``TaintError/missingPrivilege(tag:action:)``, ``TaintError/unknownTag(_:)`` for a
    ///   removed tag the store never registered, ``StoreError/sampleNotFound(_:)``; nothing is written.
    @discardableResult
    public func relabel(_ ids: [UInt64], _ change: TaintChange, privileges: Set<String> = [], agent: String) throws -> Int {
        try change.check(privileges: privileges)
        // Removing a tag the store never had is a typo, not a declassification to log.
        let catalog = try catalog()
        if let unknown = change.removeSecrecy.union(change.removeIntegrity).sorted().first(where: { !catalog.isRegistered($0) }) {
            throw TaintError.unknownTag(unknown)
        }
        var newIDs: [TaintLabel: UInt32] = [:]
        let unique = Set(ids).sorted()
        // A lowered label would make rows a fit could not use look fitted: the samples
        // read `stale` for projectors fitted before, as if their embedding had changed.
        let sequence = change.lowers ? try writeSequence() : nil
        var changed: [UInt64] = []
        for id in unique {
            let old: (bytes: [UInt8], taint: UInt32)? = try withValue(.samples, key: id) { bytes in
                guard let bytes else { return nil }
                return (Array(bytes), try decodeSampleRecord(id: id, bytes).taintLabel)
            }
            guard let old, try admits(labelID: old.taint) else { throw StoreError.sampleNotFound(id) }
            let label = change.applied(to: try taintLabel(id: old.taint, sample: id))
            let newID: UInt32
            if let known = newIDs[label] { newID = known } else { newID = try intern(label); newIDs[label] = newID }
            guard newID != old.taint else { continue }
            changed.append(id)
            try put(.samples, key: BigEndianKey.u64(id), bytes: SampleRecord.relabelled(old.bytes, id: id, taintLabel: newID, sequence: sequence))
            try movePartition(sample: id, from: old.taint, to: newID)
        }
        if change.restricts { try restrictProjectors(fittedOn: unique, change) }
        var parameters: [String: String] = [:]
        for (key, tags) in [("add_secrecy", change.addSecrecy), ("remove_secrecy", change.removeSecrecy),
                            ("add_integrity", change.addIntegrity), ("remove_integrity", change.removeIntegrity),
                            ("privileges", privileges)] where !tags.isEmpty {
            parameters[key] = tags.sorted().joined(separator: ",")
        }
        describe(ProvenanceRecord(
            activity: change.activity, agent: agent,
            generated: [ProvenanceEntity(kind: "samples", name: "relabelled", rows: unique.count, firstID: unique.first, lastID: unique.last)],
            parameters: parameters))
        noteChange("samples_relabelled", unique.count)
        // The samples whose label changed: the steps `audit` lists in their lineage.
        noteIDs("relabelled", changed)
        return unique.count
    }

    /// Joins a restricting change into every projector version fitted on any of `ids`.
    func restrictProjectors(fittedOn ids: [UInt64], _ change: TaintChange) throws {
        // Projectors are read under the full clearance: a projector the caller cannot see must
        // still become more restrictive.
        let recorded = try recordsFittedSamples
        // The slots of the samples, for the fitted-sample records (format 7).
        let slots = recorded ? try ids.compactMap { try storedSlot(of: $0) } : []
        for name in try names(in: .projectors) {
            let key = Array(name.utf8)
            guard let record = try projectorRecord(key: key) else { continue }
            let versions = try versionRecords(ProjectorVersion.self, in: .projectorVersions, id: record.id, latest: record.latest, name: name)
            for var version in versions {
                if recorded {
                    var cache: [UInt64: [UInt8]] = [:]
                    guard try slots.contains(where: { try wasFitted(projector: record.id, version: version.version, slot: $0, cache: &cache) }) else { continue }
                } else if let set = try fittedSource(of: version) {
                    // (Before format 7, with its source dropped, no one can tell which samples a
                    // version was fitted on: it is restricted as if it used them all.)
                    guard try ids.contains(where: { try hasAnySoftLabel($0, set: set, version: version.sourceVersion) }) else { continue }
                }
                let restricted = change.applied(to: version.taintLabel).join(version.taintLabel)
                guard restricted != version.taintLabel else { continue }
                version.taint = restricted
                _ = try intern(restricted)
                let vkey = ProjectorCodec.versionKey(id: record.id, version: version.version)
                try put(.projectorVersions, key: vkey, bytes: LabelRecord.encodeJSON(version, key: vkey))
            }
        }
    }
}
