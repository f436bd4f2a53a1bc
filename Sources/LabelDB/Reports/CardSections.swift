import Foundation

// The sections of the HTML corpus card, in page order.
extension CardPage {
    mutating func composition(_ card: CorpusCard) {
        let c = card.composition
        element("h2", "Composition")
        table(nil, [
            ["samples", "\(c.samples)"], ["embeddings", "\(c.dimension)-d \(c.elementType)"], ["classes", "\(c.classes.count)"],
            ["bytes on disk", c.bytesOnDisk.map { "\($0)" } ?? "not shown: the file also holds rows this clearance does not see"],
            ["samples without any label", "\(card.unlabelled)"],
        ])
        if c.fields.isEmpty { element("p", "No sample has metadata.") }
        if !c.fields.isEmpty {
            element("h3", "Metadata fields")
            table(["field", "present", "top values (count)"], c.fields.map { f in
                [f.name, "\(f.present)", f.topValues.map { "\($0.value) (\($0.count))" }.joined(separator: ", ")
                    + (f.approximate ? " — approximate: more distinct values than the sketch keeps" : "")]
            })
            if c.fieldsNotShown > 0 { element("p", "\(c.fieldsNotShown) more field names are not described (the card describes the first 200).") }
            for f in c.fields.prefix(30) { if let h = f.numeric { histogram("Values of \(f.name)", h) } }
        }
        let names = c.payloadSizes.indices.map { $0 == 0 ? "empty" : $0 == 1 ? "1 B" : "\(1 << ($0 - 1))–\((1 << $0) - 1) B" }
        bars("Payload sizes (samples per size range)", Array(zip(names, c.payloadSizes)).filter { $0.1 > 0 }, inOrder: true)
    }

    mutating func labelSource(_ s: CorpusCard.LabelSource, classes: [String]) {
        element("h2", "\(s.kind == "projector" ? "Projector" : "Label set") \(s.name)")
        table(nil, [
            ["labelled samples", "\(s.labelled)"], ["codec", s.codec ?? (s.kind == "projector" ? "regenerated on read" : "none (hard or multi labels)")],
            ["taint label", Self.taint(s.taint)],
        ])
        if !s.versions.isEmpty {
            table(["version", "agent", "time", "kind", "rows", "mean KL", "top-1 agreement", "bytes/label"], s.versions.map { v in
                let f = v.fidelity
                return ["\(v.version)" + (v.isDropped ? " (dropped)" : ""), v.agent, Self.date(v.timeMilliseconds), v.kind.rawValue,
                        v.statisticsRedacted ? "redacted" : "\(v.rows)", f.map { Self.format($0.meanKL) } ?? "–",
                        f.map { Self.percent($0.top1Agreement) } ?? "–", f.map { Self.format($0.bytesPerLabel) } ?? "–"]
            })
            for v in s.versions where !v.isDropped {
                guard let bins = v.fidelity?.klHistogram else { continue }
                let names = ["< 1e-6"] + Fidelity.klHistogramEdges.enumerated().map { i, edge in
                    i + 1 < Fidelity.klHistogramEdges.count ? "\(Self.format(edge))–\(Self.format(Fidelity.klHistogramEdges[i + 1]))" : "≥ \(Self.format(edge))"
                }
                bars("Codec fidelity of version \(v.version): rows per KL(original ‖ stored) in nats, recorded at import", Array(zip(names, bins)), inOrder: true)
            }
            if s.versions.contains(where: \.statisticsRedacted) {
                element("p", "Import statistics count every row the import wrote; this clearance does not see them all, so they are redacted.")
            }
        }
        if let p = s.projector {
            table(["rank", "head", "fitted on", "hold-out mean KL", "hold-out top-1", "bound", "corrected", "bytes"], [[
                "\(p.options.rank)", p.head ?? "none", "\(p.sourceSet)@\(p.sourceVersion)",
                p.statisticsRedacted ? "redacted" : Self.format(p.report.holdoutMeanKL), p.statisticsRedacted ? "redacted" : Self.percent(p.report.holdoutTop1),
                p.maxKL.map { "KL ≤ \(Self.format($0))" + (p.requireTop1 ? " + top-1" : "") } ?? "none",
                p.statisticsRedacted || p.samples == 0 ? "–" : Self.percent(Double(p.corrections) / Double(p.samples)), bytesAgainstStored(p, s.fittedOn),
            ]])
        }
        bars("Class balance of \(s.name) (top-1 class, samples)", zip(classes, s.classCounts).map { ($0, $1) }.filter { $0.1 > 0 })
        histogram("Top-1 confidence of \(s.name)", s.confidence)
        histogram("Entropy of \(s.name) (nats)", s.entropy)
    }

    /// A projector's bytes, and their share of the soft labels stored for the versions it was
    /// fitted on (when those statistics are visible).
    func bytesAgainstStored(_ p: ProjectorVersion, _ set: LabelSet?) -> String {
        let total = p.parameterBytes + p.correctionBytes
        let stored = p.storedLabelBytes(in: set)
        return stored > 0 ? "\(total) (\(Self.percent(Double(total) / Double(stored))) of the stored labels)" : "\(total)"
    }

    mutating func agreement(_ card: CorpusCard) {
        element("h2", "Between label sources")
        if let note = card.agreementNote { element("p", "Agreement not shown: \(note).") }
        guard !card.pairs.isEmpty else { return }
        let names = card.labelSources.map(\.name)
        heatMap(names, card.pairs)
        table(["a", "b", "common samples", "top-1 agreement", "Cohen's κ"], card.pairs.map {
            [$0.a, $0.b, "\($0.count)", $0.count == 0 ? "–" : Self.percent($0.agreement), $0.kappa.map(Self.format) ?? "–"]
        })
        if !card.confusions.isEmpty {
            element("h3", "Most confused class pairs")
            let classes = card.composition.classes
            table(["a", "b", "class in a", "class in b", "samples"], card.confusions.map { [$0.a, $0.b, classes[$0.classA], classes[$0.classB], "\($0.count)"] })
        }
    }

    /// The top-1 agreement (shade and figure) and κ of every pair as a matrix of cells.
    mutating func heatMap(_ names: [String], _ pairs: [CorpusCard.Pair]) {
        let cell = 56, label = 150, n = names.count
        raw("<figure><figcaption>Top-1 agreement and Cohen's κ between label sources</figcaption>")
        raw("<svg role=\"img\" width=\"\(label + cell * n)\" height=\"\(label + cell * n)\"><title>Top-1 agreement and Cohen's κ between label sources</title>")
        for (i, name) in names.enumerated() {
            raw("<text x=\"0\" y=\"\(label + i * cell + cell / 2)\">"); text(String(name.prefix(22))); raw("</text>")
            raw("<text transform=\"translate(\(label + i * cell + cell / 2),\(label - 4)) rotate(-60)\">"); text(String(name.prefix(22))); raw("</text>")
        }
        for pair in pairs where pair.count > 0 {
            guard let i = names.firstIndex(of: pair.a), let j = names.firstIndex(of: pair.b) else { continue }
            for (x, y) in [(i, j), (j, i)] {
                let shade = Int(255 - 170 * pair.agreement)
                raw("<rect x=\"\(label + x * cell)\" y=\"\(label + y * cell)\" width=\"\(cell - 2)\" height=\"\(cell - 2)\" fill=\"rgb(\(shade),\(shade),255)\"/>")
                raw("<text x=\"\(label + x * cell + 4)\" y=\"\(label + y * cell + cell / 2 - 2)\">\(Self.percent(pair.agreement))</text>")
                raw("<text x=\"\(label + x * cell + 4)\" y=\"\(label + y * cell + cell / 2 + 11)\">κ \(pair.kappa.map { String(format: "%.2f", $0) } ?? "–")</text>")
            }
        }
        raw("</svg></figure>")
    }

    mutating func flow(_ card: CorpusCard) {
        element("h2", "Flow labels")
        bars("Samples per taint label (secrecy | integrity)", card.taintLabels.map {
            ("\($0.secrecy.isEmpty ? "public" : $0.secrecy.joined(separator: ",")) | \($0.integrity.joined(separator: ","))", $0.samples)
        })
        element("p", "What a clearance of exactly these secrecy tags sees, among the samples this card covers (never more than this clearance):")
        table(["clearance (secrecy tags)", "samples"], card.clearanceViews.map { [$0.secrecy.isEmpty ? "public" : $0.secrecy.joined(separator: ","), "\($0.samples)"] })
        table(["label source", "taint label"], card.labelSources.map { [$0.name, Self.taint($0.taint)] })
        if !card.sourceTags.isEmpty {
            element("p", "Tags on derived labels and projectors: the share of the label sources above whose taint label carries each.")
            table(["tag", "kind", "sources", "share"], card.sourceTags.map {
                [$0.tag, $0.kind, $0.sources.joined(separator: ", "), Self.percent(Double($0.sources.count) / Double(max(card.labelSources.count, 1)))]
            })
        }
    }

    mutating func provenance(_ card: CorpusCard) {
        element("h2", "Provenance")
        element("p", "\(card.provenanceRecords) records; head \(card.provenanceHead); the hash chain \(card.provenanceVerifies ? "verifies" : "does NOT verify"). (The log is readable at every clearance.)")
        lineage(card.activities)
        table(["#", "time", "activity", "agent", "used", "generated", "parameters"], card.activities.map {
            let parameters = $0.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
            return ["\($0.id)", Self.date($0.timeMilliseconds), $0.activity, $0.agent, $0.used.joined(separator: ", "), $0.generated.joined(separator: ", "),
                    parameters.count > 160 ? String(parameters.prefix(159)) + "…" : parameters]
        }, scroll: card.activities.count > 20)
    }

    /// Label sets and projectors as boxes, one column per generation, with an arrow from what
    /// an activity used to what it generated.
    mutating func lineage(_ activities: [CorpusCard.Activity]) {
        var depth: [String: Int] = [:], edges: [(String, String)] = []
        let isDerived = { (name: String) in name.contains("@") }
        for a in activities {
            for g in a.generated where isDerived(g) {
                let sources = a.used.filter(isDerived)
                depth[g] = (sources.compactMap { depth[$0] }.max() ?? -1) + 1
                for u in sources { depth[u] = depth[u] ?? 0; edges.append((u, g)) }
            }
        }
        guard !edges.isEmpty else { return }
        let columns = Dictionary(grouping: depth.keys.sorted(), by: { depth[$0]! })
        var at: [String: (Int, Int)] = [:]
        for (d, names) in columns { for (row, name) in names.enumerated() { at[name] = (d * 190 + 4, row * 34 + 4) } }
        let width = (columns.keys.max()! + 1) * 190, height = (columns.values.map(\.count).max()! * 34) + 8
        raw("<figure><figcaption>Lineage: label sets and projectors, and what each was made from</figcaption>")
        raw("<svg role=\"img\" width=\"\(width)\" height=\"\(height)\"><title>Lineage of label sets and projectors</title>")
        for (u, g) in edges {
            let (x1, y1) = at[u]!, (x2, y2) = at[g]!
            raw("<line x1=\"\(x1 + 150)\" y1=\"\(y1 + 12)\" x2=\"\(x2)\" y2=\"\(y2 + 12)\" stroke=\"#888\"/>")
        }
        for (name, (x, y)) in at.sorted(by: { $0.key < $1.key }) {
            raw("<rect x=\"\(x)\" y=\"\(y)\" width=\"150\" height=\"24\" fill=\"#eef\" stroke=\"#99a\"/><text x=\"\(x + 4)\" y=\"\(y + 16)\">")
            text(String(name.prefix(24))); raw("</text>")
        }
        raw("</svg><details><summary>edges</summary>")
        table(["made from", "made"], edges.map { [$0.0, $0.1] })
        raw("</details></figure>")
    }

    mutating func embeddings(_ card: CorpusCard) {
        element("h2", "Embedding health")
        histogram("Embedding norms", card.norms)
        table(nil, [
            ["exact duplicates (samples whose embedding equals an earlier one)", "\(card.exactDuplicates)"],
            ["near duplicates (estimate)", card.nearDuplicateQueries == 0 ? "–" : "\(card.nearDuplicates) of \(card.nearDuplicateQueries) sampled samples have another at cosine ≥ 0.99"],
        ])
    }
}
