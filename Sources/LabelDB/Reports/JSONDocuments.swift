import Foundation

// The JSON documents every shell prints or returns (format-spec/cli.md): the CLI writes them, the
// C API and the Python package return them, so all three give the same answers.

/// The JSON form of a version record (format-spec/cli.md).
public func versionJSON(_ v: LabelSetVersion) -> [String: JSONValue] {
    var object: [String: JSONValue] = [
        "version": .int(Int64(v.version)), "agent": .string(v.agent), "time_ms": .int(v.timeMilliseconds),
        "kind": .string(v.kind.rawValue), "rows": .int(Int64(v.rows)), "labelled": .int(Int64(v.labelled)),
        "soft_bytes": .int(Int64(v.softBytes)), "source": v.sourceLabel.json,
        "statistics_redacted": .bool(v.statisticsRedacted),
    ]
    if v.isDropped { object["dropped"] = .bool(true) }
    if let views = v.views { object["views"] = .int(Int64(views)) }
    if let f = v.fidelity {
        var fidelity: [String: JSONValue] = [
            "mean_kl": .double(f.meanKL), "max_kl": .double(f.maxKL), "top1_agreement": .double(f.top1Agreement),
            "bytes_per_label": .double(f.bytesPerLabel), "ratio_to_dense_f32": .double(f.ratioToDenseF32)]
        // Only compact input is stored "as given" or not; dense input has no such key.
        if let exact = f.exact { fidelity["exact"] = .bool(exact) }
        if let bins = f.klHistogram { fidelity["kl_histogram"] = .array(bins.map { .int(Int64($0)) }) }
        object["fidelity"] = .object(fidelity)
    } else {
        object["fidelity"] = .null
    }
    return object
}

/// The JSON form of one sample's label in a label set: version, agent and the top classes.
public func labelJSON(_ label: Label, set: LabelSet, version: Int, classes: [String], top: Int = 5) -> JSONValue {
    var object: [String: JSONValue] = [
        "version": .int(Int64(version)), "row_version": .int(Int64(label.version)),
        "agent": .string(set.versions[label.version - 1].agent),
    ]
    if let hard = label.hard { object["hard"] = .int(Int64(hard)) }
    if let multi = label.multi { object["multi"] = .array(multi.map { .int(Int64($0)) }) }
    if let views = label.views {
        // A per-view row: each view's parameters (as a views-file line) with its own label.
        object["views"] = .array(views.map { view in
            guard case .object(var members) = view.parameters.json else { return .null }
            if let hard = view.hard { members["hard"] = .int(Int64(hard)) }
            members["top"] = topClassesJSON(view.label.distribution(classCount: classes.count), classes: classes, count: top)
            return .object(members)
        })
    } else {
        object["top"] = topClassesJSON(label.distribution(classCount: classes.count), classes: classes, count: top)
    }
    object["taint"] = label.taint.json
    return .object(object)
}

/// The `count` most probable classes of `p` (ties to the smaller index; zero-probability classes
/// left out) as `[{"class", "name", "p"}]`.
public func topClassesJSON(_ p: [Float], classes: [String], count: Int = 5) -> JSONValue {
    let order = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }.prefix(count).filter { p[$0] > 0 }
    return .array(order.map { ["class": .int(Int64($0)), "name": .string(classes[$0]), "p": jsonNumber(p[$0])] })
}

/// The JSON form of a projector version (format-spec/cli.md).
public func projectorVersionJSON(_ v: ProjectorVersion, name: String, labelSet: LabelSet?, classes: Int) -> [String: JSONValue] {
    let r = v.report
    let denseF16 = 2.0 * Double(classes) * Double(v.samples)
    let stored = Double(v.storedLabelBytes(in: labelSet))
    let total = Double(v.parameterBytes + v.correctionBytes)
    var json: [String: JSONValue] = [
        "name": .string(name), "version": .int(Int64(v.version)), "source": .string("\(v.sourceSet)@\(v.sourceVersion)"),
        "head": v.head.map { .string($0) } ?? .null, "rank": .int(Int64(v.options.rank)), "holdout": .double(v.options.holdout),
        "seed": .uint(v.options.seed), "epochs": v.options.epochs.map { .int(Int64($0)) } ?? .null, "max_steps": .int(Int64(v.options.maxSteps)), "patience": .int(Int64(v.options.patience)),
        "steps": r.steps.map { .int(Int64($0)) } ?? .null, "stop_reason": r.stopReason.map { .string($0) } ?? .null, "fit_temperature": .bool(v.options.fitTemperature), "agent": .string(v.agent), "time_ms": .int(v.timeMilliseconds),
        "samples": .int(Int64(v.samples)), "train_rows": .int(Int64(r.trainRows)), "holdout_rows": .int(Int64(r.holdoutRows)),
        "train_mean_kl": .double(r.trainMeanKL), "train_max_kl": .double(r.trainMaxKL), "train_top1": .double(r.trainTop1),
        "holdout_mean_kl": .double(r.holdoutMeanKL), "holdout_max_kl": .double(r.holdoutMaxKL), "holdout_top1": .double(r.holdoutTop1),
        "closed_form_mean_kl": .double(r.closedFormMeanKL), "fit_seconds": .double(r.seconds),
        "max_kl": v.maxKL.map { .double($0) } ?? .null, "top1_bound": .bool(v.requireTop1),
        "corrections": .int(Int64(v.corrections)), "correction_bytes": .int(Int64(v.correctionBytes)),
        "parameter_bytes": .int(Int64(v.parameterBytes)), "total_bytes": .int(Int64(total)),
        "ratio_to_dense_f32": .double(total / (2 * denseF16)), "ratio_to_dense_f16": .double(total / denseF16),
        "ratio_to_stored": stored > 0 ? .double(total / stored) : .null,
        "taint": v.statisticsRedacted ? .null : v.taintLabel.json,
    ]
    if let search = r.rankSearch { json["rank_search"] = rankSearchJSON(search) }
    return json
}

/// The JSON form of a rank search: the budget, the sample, and each candidate's bytes.
func rankSearchJSON(_ search: RankSearch) -> JSONValue {
    ["budget_bytes": .int(Int64(search.budgetBytes)), "sample_rows": .int(Int64(search.sampleRows)), "probe_rows": .int(Int64(search.probeRows)),
     "candidates": .array(search.candidates.map { c in
         ["rank": .int(Int64(c.rank)), "parameter_bytes": .int(Int64(c.parameterBytes)), "probe_corrections": .int(Int64(c.probeCorrections)),
          "correction_bytes": .int(Int64(c.correctionBytes)), "total_bytes": .int(Int64(c.totalBytes)),
          "measured_bytes": c.measuredBytes.map { .int(Int64($0)) } ?? .null]
     })]
}

/// A `Float` as a JSON number in its shortest decimal form (not widened to `Double` digits).
public func jsonNumber(_ value: Float) -> JSONValue {
    guard value.isFinite else { return .null }
    if value == value.rounded(), abs(value) < 1e15 { return .int(Int64(value)) }
    return .double(Double("\(value)") ?? Double(value))
}

/// The JSON summary of a label set, one line of `labels list` (format-spec/cli.md).
public func labelSetSummaryJSON(_ set: LabelSet) -> JSONValue {
    let latest = set.versions.last
    return ["name": .string(set.name), "latest": .int(Int64(set.latest)), "codec": set.codec.map { .string($0.description) } ?? .null,
            "labelled": .int(Int64(latest?.labelled ?? 0)), "agent": .string(latest?.agent ?? ""),
            "statistics_redacted": .bool(latest?.statisticsRedacted ?? false), "per_view": .bool(set.perView)]
}

/// The JSON summary of a projector's latest version, one line of `projectors list`.
public func projectorSummaryJSON(_ projector: Projector) -> JSONValue {
    guard let v = projector.versions.last else { return ["name": .string(projector.name), "latest": 0] }
    return ["name": .string(projector.name), "latest": .int(Int64(projector.latest)), "rank": .int(Int64(v.options.rank)),
            "source": .string("\(v.sourceSet)@\(v.sourceVersion)"), "head": v.head.map { .string($0) } ?? .null,
            "taint": v.statisticsRedacted ? .null : v.taintLabel.json, "usable": .bool(!v.statisticsRedacted)]
}

/// The JSON form of `info`: counts as the clearance sees them, the schema, sizes, the format version.
public func storeInfoJSON(_ store: Store, count: Int, tags: [String]) -> JSONValue {
    let schema = store.schema
    return [
        "path": .string(store.path),
        "count": .int(Int64(count)),
        "dim": .int(Int64(schema.dimension)),
        "dtype": .string(schema.elementType.rawValue),
        "classes": .array(schema.classes.map { .string($0) }),
        "format_version": .int(Int64(store.formatVersion)),
        "bytes_on_disk": .int(Int64(store.bytesOnDisk)),
        "rows_per_block": .int(Int64(schema.rowsPerBlock)),
        "read_only": .bool(store.isReadOnly),
        "tags": .array(tags.map { .string($0) }),
    ]
}

/// `labeldb info --format json` for a store or a sharded corpus: a store's document, with the
/// corpus's path, its samples and bytes summed over the shards, and `shards` and `routing`.
public func corpusInfoJSON(_ corpus: Corpus, count: Int, tags: [String]) -> JSONValue {
    guard let manifest = corpus.manifest, case .object(var members) = storeInfoJSON(corpus.shards[0], count: count, tags: tags) else {
        return storeInfoJSON(corpus.shards[0], count: count, tags: tags)
    }
    members["path"] = .string(corpus.path)
    members["bytes_on_disk"] = .int(Int64(corpus.shards.reduce(0) { $0 + $1.bytesOnDisk }))
    members["shards"] = .array(manifest.shards.map { .string($0) })
    members["routing"] = manifest.body["routing"]
    return .object(members)
}

/// The JSON form of one query's kNN label (`knn --labels`, one object per query).
public func knnLabelJSON(_ result: KNNLabelResult, query: Int, classes: [String]) -> JSONValue {
    [
        "query": .int(Int64(query)), "probs": .array(result.probabilities.map(jsonNumber)),
        "label": result.label.json, "conservative_label": result.conservativeLabel.json,
        "neighbors": .array(result.neighbors.map { ["id": .uint($0.id), "similarity": jsonNumber($0.similarity)] }),
        "witness": .array(result.witness.map { .uint($0) }),
        "context": .array(result.context.map { .string($0) }), "contexts_tried": .int(Int64(result.contextsTried)),
        "top": topClassesJSON(result.probabilities, classes: classes),
    ]
}

/// The JSON form of a verification report (`verify --format json`).
public func verificationJSON(_ report: VerificationReport) -> JSONValue {
    [
        "ok": .bool(report.isClean),
        "samples_checked": .int(Int64(report.samplesChecked)),
        "blocks_checked": .int(Int64(report.blocksChecked)),
        "records_checked": .int(Int64(report.recordsChecked)),
        "problems": .array(report.problems.map { ["table": .string($0.table), "key": .string($0.key), "detail": .string($0.detail)] }),
    ]
}

/// The JSON form of one pair of `labels agree` (format-spec/cli.md).
public func agreementPairJSON(_ pair: PairAgreement) -> JSONValue {
    ["a": .string(pair.a), "b": .string(pair.b), "count": .int(Int64(pair.count)), "agreement": .double(pair.agreement),
     "kappa": pair.kappa.map(JSONValue.double) ?? .null, "js_divergence": .double(pair.jsDivergence),
     "confusion": .array(pair.confusion.map { .array($0.map { .int(Int64($0)) }) })]
}

/// The Fleiss line of `labels agree` (three or more sources), or nil.
public func agreementFleissJSON(_ result: Agreement) -> JSONValue? {
    guard result.sets.count >= 3 else { return nil }
    return ["sets": .array(result.sets.map(JSONValue.string)), "count": .int(Int64(result.fleissCount)),
            "fleiss_kappa": result.fleissKappa.map(JSONValue.double) ?? .null]
}

/// The JSON form of a consensus import (format-spec/cli.md, `labels consensus`).
public func consensusJSON(_ report: ConsensusReport, name: String, method: ConsensusMethod) -> JSONValue {
    var object = versionJSON(report.version)
    object["name"] = .string(name)
    object["sources"] = .array(report.sources.map(JSONValue.string))
    object["method"] = .string(method.rawValue)
    if let iterations = report.iterations { object["iterations"] = .int(Int64(iterations)) }
    if let accuracy = report.sourceAccuracy { object["source_accuracy"] = .object(Dictionary(uniqueKeysWithValues: zip(report.sources, accuracy.map(JSONValue.double)))) }
    if let learned = report.referenceAccuracy {
        object["reference"] = .string(learned.reference)
        object["reference_samples"] = .int(Int64(learned.samples))
        object["reference_accuracy"] = .object(Dictionary(uniqueKeysWithValues: report.sources.enumerated().map { s, name in
            (name, JSONValue.array(learned.counts[s].indices.map { c in learned.accuracy(source: s, classIndex: c).map(JSONValue.double) ?? .null }))
        }))
        object["reference_counts"] = .object(Dictionary(uniqueKeysWithValues: zip(report.sources, learned.counts.map { JSONValue.array($0.map { .int(Int64($0)) }) })))
    }
    return .object(object)
}

/// The JSON form of `projector check` (format-spec/cli.md).
public func projectorCheckJSON(_ check: ProjectorCheck) -> JSONValue {
    ["checked": .int(Int64(check.checked)), "corrected": .int(Int64(check.corrected)), "stale": .int(Int64(check.stale)),
     "unfitted": .int(Int64(check.unfitted)), "mean_kl": .double(check.meanKL), "max_kl": .double(check.maxKL),
     "max_kl_id": check.maxKLSample.map(JSONValue.uint) ?? .null, "top1_misses": .int(Int64(check.top1Misses)),
     "bound_max_kl": check.boundMaxKL.map(JSONValue.double) ?? .null, "bound_top1": .bool(check.requireTop1),
     "violations": .array(check.violations.map(JSONValue.uint)), "bound_holds": check.boundMaxKL == nil ? .null : .bool(check.boundHolds)]
}

/// The JSON form of `labels drop` (format-spec/cli.md).
public func labelDropJSON(_ dropped: LabelSetDrop) -> JSONValue {
    ["name": .string(dropped.name), "versions": .int(Int64(dropped.versions)), "rows": .int(Int64(dropped.rows)),
     "blocks": .int(Int64(dropped.blocks)), "posting_chunks": .int(Int64(dropped.postingChunks)),
     "dependent_projectors": .array(dropped.dependentProjectors.map(JSONValue.string))]
}

/// One line of `labels issues` (format-spec/cli.md): classes as indices.
public func labelIssueJSON(_ issue: LabelIssue) -> JSONValue {
    ["rank": .int(Int64(issue.rank)), "id": .uint(issue.id), "given": .int(Int64(issue.given)), "suggested": .int(Int64(issue.suggested)),
     "self_confidence": .double(issue.selfConfidence), "margin": .double(issue.margin)]
}
