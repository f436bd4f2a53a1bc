import Foundation

extension Corpus {
    /// The provenance of every shard as one W3C PROV-JSON document: each shard's log (what the
    /// clearance sees of it) as a bundle of its own, exactly as ``provJSON(_:)`` writes a store's,
    /// named `labeldb:shard/NAME`; the corpus a `prov:Collection` whose members are the bundles,
    /// each with the log length and head the manifest recorded (corpus.md K-9). A shard's log
    /// begins with the records it was split from (the source store's, copied into every shard),
    /// so those appear in every bundle, under the same record numbers. For a store: its document.
    public func provenanceDocument(clearance: Clearance) throws -> (document: JSONValue, records: Int) {
        guard isSharded, let manifest else {
            let records = try shards[0].read(clearance: clearance) { try $0.provenanceRecords() }
            return (provJSON(records), records.count)
        }
        var entities: [String: JSONValue] = ["labeldb:corpus": ["prov:type": "prov:Collection", "labeldb:generation": .int(Int64(manifest.generation))]]
        var members: [String: JSONValue] = [:], bundles: [String: JSONValue] = [:]
        var total = 0
        for (index, shard) in shards.enumerated() {
            let records = try shard.read(clearance: clearance) { try $0.provenanceRecords() }
            total += records.count
            let name = "labeldb:shard/\(manifest.shards[index])"
            // safe: provJSON always makes an object.
            var bundle = provJSON(records).objectValue!
            bundle.removeValue(forKey: "prefix")  // the document's own
            bundles[name] = .object(bundle)
            let state = manifest.shardStates[index]
            entities[name] = ["prov:type": "prov:Bundle", "labeldb:shard": .int(Int64(index)),
                              "labeldb:committed_records": .int(Int64(state.records)), "labeldb:committed_head": .string(state.head)]
            members["_:member\(index)"] = ["prov:collection": "labeldb:corpus", "prov:entity": .string(name)]
        }
        let document: JSONValue = [
            "prefix": ["labeldb": "https://labeldb.invalid/ns#", "prov": "http://www.w3.org/ns/prov#"],
            "entity": .object(entities), "hadMember": .object(members), "bundle": .object(bundles),
        ]
        return (document, total)
    }
}
