import Foundation

/// The corpus card as one self-contained page: inline CSS and SVG drawn here, no script, font or
/// address outside the file, well-formed XML (so any strict parser reads it), every chart in a
/// figure with a caption and a table of its numbers. The card's JSON is embedded verbatim
/// (`<script type="application/json" id="card-data">`, not executed), and every figure shown is
/// drawn from the same ``CorpusCard``.
public func corpusCardHTML(_ card: CorpusCard, title: String) -> String {
    var page = CardPage()
    page.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>")
    page.text("Corpus card: \(title)")
    page.raw("</title><style>\(CardPage.style)</style></head><body>")
    page.element("h1", "Corpus card: \(title)")
    page.element("p", "Everything below is what clearance \(card.clearance) sees: counts cover only the samples and labels it admits.")
    page.composition(card)
    for source in card.labelSources { page.labelSource(source, classes: card.composition.classes) }
    page.agreement(card)
    page.flow(card)
    page.provenance(card)
    page.embeddings(card)
    let json = corpusCardJSON(card).serialized()
        .replacingOccurrences(of: "&", with: "\\u0026").replacingOccurrences(of: "<", with: "\\u003c").replacingOccurrences(of: ">", with: "\\u003e")
        .replacingOccurrences(of: "\u{FFFE}", with: "\\ufffe").replacingOccurrences(of: "\u{FFFF}", with: "\\uffff")
    page.raw("<script type=\"application/json\" id=\"card-data\">\(json)</script></body></html>\n")
    return page.html
}

/// The page being written, with the helpers every section uses.
struct CardPage {
    var html = ""
    var figures = 0

    static let style = """
        body{font:14px/1.4 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}\
        h2{border-bottom:1px solid #ccc;margin-top:2em}table{border-collapse:collapse;margin:.5em 0}\
        td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}\
        td.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1em 0;break-inside:avoid}\
        figcaption{font-weight:600}.scroll{max-height:20em;overflow:auto}svg text{font:11px sans-serif}\
        @media print{.scroll{max-height:none;overflow:visible}details{display:block}}
        """

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            // XML forbids most control characters and U+FFFE/U+FFFF, even escaped: show them as U+FFFD.
            case _ where (c.value < 0x20 && c != "\n" && c != "\t") || c.value == 0xFFFE || c.value == 0xFFFF: out += "\u{FFFD}"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    mutating func raw(_ s: String) { html += s }
    mutating func text(_ s: String) { html += Self.escape(s) }
    mutating func element(_ tag: String, _ content: String) { raw("<\(tag)>"); text(content); raw("</\(tag)>") }

    /// A table: a header row (none when nil) and rows of cells (numbers right-aligned),
    /// scrollable when long.
    mutating func table(_ header: [String]?, _ rows: [[String]], scroll: Bool = false) {
        if scroll { raw("<div class=\"scroll\">") }
        raw("<table>")
        if let header {
            raw("<tr>")
            for h in header { element("th", h) }
            raw("</tr>")
        }
        for row in rows {
            raw("<tr>")
            for cell in row { raw(Double(cell.replacingOccurrences(of: ",", with: "")) != nil ? "<td class=\"n\">" : "<td>"); text(cell); raw("</td>") }
            raw("</tr>")
        }
        raw("</table>")
        if scroll { raw("</div>") }
    }

    /// Horizontal bars, largest first (or in the given order, for ranges): at most `shown`
    /// bars, the rest summed as "other"; the table below lists every value.
    mutating func bars(_ caption: String, _ items: [(String, Int)], shown: Int = 30, inOrder: Bool = false) {
        var sorted = inOrder ? items : items.sorted { ($0.1, $1.0) > ($1.1, $0.0) }
        if sorted.count > shown {
            let rest = sorted[(shown - 1)...].reduce(0) { $0 + $1.1 }
            sorted = Array(sorted.prefix(shown - 1)) + [("other (\(sorted.count - shown + 1))", rest)]
        }
        let top = max(sorted.map(\.1).max() ?? 1, 1), rowHeight = 16, width = 560, labelWidth = 180
        raw("<figure><figcaption>"); text(caption); raw("</figcaption>")
        raw("<svg role=\"img\" width=\"\(width)\" height=\"\(rowHeight * sorted.count + 4)\"><title>")
        text(caption); raw("</title>")
        for (i, (name, value)) in sorted.enumerated() {
            let y = i * rowHeight + 2, w = (width - labelWidth - 60) * value / top
            raw("<text x=\"0\" y=\"\(y + 11)\">"); text(String(name.prefix(28))); raw("</text>")
            raw("<rect x=\"\(labelWidth)\" y=\"\(y)\" width=\"\(w)\" height=\"\(rowHeight - 4)\" fill=\"#4a7ab5\"/>")
            raw("<text x=\"\(labelWidth + w + 4)\" y=\"\(y + 11)\">\(value)</text>")
        }
        raw("</svg>")
        raw("<details><summary>values</summary>")
        table(["", "count"], (inOrder ? items : items.sorted { ($0.1, $1.0) > ($1.1, $0.0) }).map { [$0.0, "\($0.1)"] }, scroll: items.count > 30)
        raw("</details></figure>")
    }

    /// Vertical bars over equal-width bins, with the bin edges in the table.
    mutating func histogram(_ caption: String, _ h: CorpusCard.Histogram) {
        let top = max(h.counts.max() ?? 1, 1), barWidth = 24, height = 100
        let note = h.sampled.map { " (estimated from a seeded sample of \($0) values)" } ?? ""
        raw("<figure><figcaption>"); text(caption + note); raw("</figcaption>")
        raw("<svg role=\"img\" width=\"\(barWidth * h.counts.count + 8)\" height=\"\(height + 16)\"><title>")
        text(caption); raw("</title>")
        for (i, n) in h.counts.enumerated() {
            let bar = height * n / top
            raw("<rect x=\"\(i * barWidth + 4)\" y=\"\(height - bar)\" width=\"\(barWidth - 2)\" height=\"\(bar)\" fill=\"#5b9a68\"/>")
        }
        raw("<text x=\"4\" y=\"\(height + 13)\">\(Self.format(h.lower))</text>")
        raw("<text x=\"\(barWidth * h.counts.count - 40)\" y=\"\(height + 13)\">\(Self.format(h.upper))</text></svg>")
        let width = (h.upper - h.lower) / Double(max(h.counts.count, 1))
        raw("<details><summary>values</summary>")
        table(["from", "to", "count"], h.counts.enumerated().map { [Self.format(h.lower + Double($0) * width), Self.format(h.lower + Double($0 + 1) * width), "\($1)"] })
        raw("</details></figure>")
    }

    static func format(_ x: Double) -> String { String(format: "%.4g", x) }
    static func taint(_ t: TaintLabel) -> String {
        t == .public ? "public" : "secrecy \(t.secrecy.sorted.joined(separator: ",")); integrity \(t.integrity.sorted.joined(separator: ","))"
    }
    static func percent(_ x: Double) -> String { String(format: "%.2f%%", 100 * x) }
    static func date(_ ms: Int64) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }
}
