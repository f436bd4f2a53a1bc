import Foundation

/// The JSON form of the corpus card (format-spec/cli.md, `labeldb card`); the HTML card embeds
/// this same document and draws every figure from it.
public func corpusCardJSON(_ card: CorpusCard) -> JSONValue {
    let c = card.composition
    return [
        "clearance": .string(card.clearance),
        "composition": [
            "samples": c.samples.json, "dimension": c.dimension.json, "dtype": .string(c.elementType),
            "classes": .array(c.classes.map(JSONValue.string)), "bytes_on_disk": c.bytesOnDisk.map { $0.json } ?? .null,
            "fields": .array(c.fields.map(fieldJSON)), "fields_not_shown": c.fieldsNotShown.json, "payload_sizes": .array(c.payloadSizes.map(\.json)),
        ],
        "label_sources": .array(card.labelSources.map { labelSourceJSON($0, classes: c.classes.count) }),
        "agreement": [
            "pairs": .array(card.pairs.map { ["a": .string($0.a), "b": .string($0.b), "count": $0.count.json, "agreement": .double($0.agreement),
                                             "kappa": $0.kappa.map(JSONValue.double) ?? .null] }),
            "confused": .array(card.confusions.map { ["a": .string($0.a), "b": .string($0.b), "class_a": $0.classA.json, "class_b": $0.classB.json, "count": $0.count.json] }),
            "note": card.agreementNote.map(JSONValue.string) ?? .null,
        ],
        "flow": [
            "taint_labels": .array(card.taintLabels.map(taintCountJSON)),
            "clearances": .array(card.clearanceViews.map(taintCountJSON)),
            "source_tags": .array(card.sourceTags.map { ["tag": .string($0.tag), "kind": .string($0.kind), "sources": .array($0.sources.map(JSONValue.string))] }),
        ],
        "provenance": [
            "records": card.provenanceRecords.json, "head": .string(card.provenanceHead), "verifies": .bool(card.provenanceVerifies),
            "activities": .array(card.activities.map {
                ["id": .uint($0.id), "activity": .string($0.activity), "agent": .string($0.agent), "time_ms": .int($0.timeMilliseconds),
                 "used": .array($0.used.map(JSONValue.string)), "generated": .array($0.generated.map(JSONValue.string)),
                 "parameters": .object($0.parameters.mapValues(JSONValue.string))]
            }),
        ],
        "embeddings": [
            "norms": histogramJSON(card.norms), "exact_duplicates": card.exactDuplicates.json,
            "near_duplicates": ["queries": card.nearDuplicateQueries.json, "found": card.nearDuplicates.json, "cosine_at_least": .double(0.99)],
            "unlabelled": card.unlabelled.json,
        ],
    ]
}

func histogramJSON(_ h: CorpusCard.Histogram) -> JSONValue {
    ["lower": .double(h.lower), "upper": .double(h.upper), "counts": .array(h.counts.map(\.json)), "sampled": h.sampled.map { $0.json } ?? .null]
}

func fieldJSON(_ f: CorpusCard.Field) -> JSONValue {
    ["name": .string(f.name), "present": f.present.json, "approximate": .bool(f.approximate),
     "top_values": .array(f.topValues.map { ["value": .string($0.value), "count": $0.count.json] }),
     "histogram": f.numeric.map(histogramJSON) ?? .null]
}

func taintCountJSON(_ t: CorpusCard.TaintCount) -> JSONValue {
    ["secrecy": .array(t.secrecy.map(JSONValue.string)), "integrity": .array(t.integrity.map(JSONValue.string)), "samples": t.samples.json]
}

func labelSourceJSON(_ s: CorpusCard.LabelSource, classes: Int) -> JSONValue {
    ["name": .string(s.name), "kind": .string(s.kind), "labelled": s.labelled.json, "class_counts": .array(s.classCounts.map(\.json)),
     "confidence": histogramJSON(s.confidence), "entropy": histogramJSON(s.entropy), "codec": s.codec.map(JSONValue.string) ?? .null,
     "taint": s.taint.json, "versions": .array(s.versions.map { .object(versionJSON($0)) }),
     "projector": s.projector.map { .object(projectorVersionJSON($0, name: String(s.name.split(separator: "@")[0]), labelSet: s.fittedOn, classes: classes)) } ?? .null]
}

extension Int {
    /// The integer as a JSON number.
    var json: JSONValue { .int(Int64(self)) }
}
