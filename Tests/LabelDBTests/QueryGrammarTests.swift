import Testing
@testable import LabelDB

@Suite("Query grammar")
struct QueryGrammarTests {
    @Test("the fixed forms parse to the expected expressions")
    func fixedForms() throws {
        let teacher = LabelSetReference(name: "teacher")
        #expect(try QueryExpression(parsing: "label(teacher).top1 = 'cat' and label(teacher).confidence < 0.6 and not tagged('pii')") ==
            .and([.comparison(.top1(teacher), .equal, .string("cat")), .comparison(.confidence(teacher), .less, .number(0.6)), .not(.tagged("pii"))]))
        #expect(try QueryExpression(parsing: "label(teacher@3).top1 = 7") == .comparison(.top1(LabelSetReference(name: "teacher", version: 3)), .equal, .integer(7)))
        #expect(try QueryExpression(parsing: "label(t).prob('dog') >= 0.25") == .comparison(.probability(LabelSetReference(name: "t"), .string("dog")), .greaterOrEqual, .number(0.25)))
        #expect(try QueryExpression(parsing: "meta.split = 'val'") == .comparison(.meta("split"), .equal, .string("val")))
        #expect(try QueryExpression(parsing: "id >= 18446744073709551615") == .comparison(.id, .greaterOrEqual, .integer(.max)))
        #expect(try QueryExpression(parsing: "(id < 5 or id > 10) and not (meta.source != 'web')") ==
            .and([.or([.comparison(.id, .less, .integer(5)), .comparison(.id, .greater, .integer(10))]), .not(.comparison(.meta("source"), .notEqual, .string("web")))]))
        #expect(try QueryExpression(parsing: "label(humans).has('cat') or label(humans).has(2)") ==
            .or([.has(LabelSetReference(name: "humans"), .string("cat")), .has(LabelSetReference(name: "humans"), .integer(2))]))
        #expect(try QueryExpression(parsing: "meta.note = 'it''s'") == .comparison(.meta("note"), .equal, .string("it's")))
        // and binds tighter than or.
        #expect(try QueryExpression(parsing: "id = 1 or id = 2 and id = 3") ==
            .or([.comparison(.id, .equal, .integer(1)), .and([.comparison(.id, .equal, .integer(2)), .comparison(.id, .equal, .integer(3))])]))
    }

    @Test("random expressions round-trip through their text")
    func roundTrip() throws {
        var rng = SplitMix64(seed: 11)
        func value() -> QueryValue {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: .string(["cat", "it's", "a b", ""].randomElement(using: &rng)!)
            case 1: .integer(UInt64.random(in: 0...UInt64.max, using: &rng))
            default: .number([0.5, -1.25, 1e-7, 3.0e12].randomElement(using: &rng)!)
            }
        }
        func set() -> LabelSetReference { LabelSetReference(name: ["teacher", "topk:5:f16", "h_1"].randomElement(using: &rng)!, version: Bool.random(using: &rng) ? Int.random(in: 1...9, using: &rng) : nil) }
        func classValue() -> QueryValue {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: .string("dog")
            case 1: .integer(UInt64.random(in: 0...999, using: &rng))
            default: .labelTop1(set())
            }
        }
        func expression(_ depth: Int) -> QueryExpression {
            switch depth > 3 ? Int.random(in: 3..<6, using: &rng) : Int.random(in: 0..<6, using: &rng) {
            case 0: return .and((0..<Int.random(in: 2...4, using: &rng)).map { _ in expression(depth + 1) })
            case 1: return .or((0..<Int.random(in: 2...4, using: &rng)).map { _ in expression(depth + 1) })
            case 2: return .not(expression(depth + 1))
            case 3: return Bool.random(using: &rng)
                ? .tagged(["pii", "licensed:getty"].randomElement(using: &rng)!)
                : .flowsTo(["secrecy=pii;integrity=human-reviewed", "secrecy=", "integrity=ok"].randomElement(using: &rng)!)
            case 4: return Bool.random(using: &rng) ? .has(set(), classValue()) : .sourceTagged(set(), ["human-reviewed", "it's"].randomElement(using: &rng)!)
            default:
                let operand: QueryOperand = [.id, .meta("split"), .top1(set()), .confidence(set()), .probability(set(), classValue()), .labelVersion(set()), .agent(set())].randomElement(using: &rng)!
                // An id compares with whole numbers only.
                var compared: QueryValue = operand == .id ? .integer(UInt64.random(in: 0...UInt64.max, using: &rng)) : value()
                if case .top1 = operand, Bool.random(using: &rng) { compared = .labelTop1(set()) }
                return .comparison(operand, QueryComparison.allCases.randomElement(using: &rng)!, compared)
            }
        }
        for _ in 0..<300 {
            let e = expression(0)
            #expect(try QueryExpression(parsing: e.description) == e, "\(e)")
        }
    }

    @Test("parse errors point at the column")
    func errors() {
        let cases: [(String, Int, String)] = [
            ("label(teacher).top1 == 'cat'", 21, "unknown operator '=='"),
            ("label(teacher).top2 = 'cat'", 16, "unknown label property 'top2'"),
            ("id >", 5, "expected a quoted string or a number"),
            ("meta.split = 'val", 14, "unterminated string"),
            ("(id = 1", 8, "expected ')'"),
            ("id = 1 id = 2", 8, "unexpected text after the expression"),
            ("label(t).prob(0.5) > 1", 15, "a class is a quoted name or a whole number"),
            ("tagged(pii)", 8, "expected a quoted tag"),
            ("flows_to('pii')", 10, "is not a label"),
            ("id = 1 and", 11, "unexpected end of the expression"),
            ("id = 1 # 2", 8, "unexpected character '#'"),
            ("id = 99999999999999999999999", 6, "an id is a whole number"),
            ("id > -1", 6, "an id is a whole number"),
            ("id = 1.5", 6, "an id is a whole number"),
            ("id = '7'", 6, "an id is a whole number"),
        ]
        for (text, column, fragment) in cases {
            #expect(performing: { _ = try QueryExpression(parsing: text) }, throws: { error in
                guard let e = error as? QueryParseError else { return false }
                return e.column == column && e.reason.contains(fragment)
            })
        }
    }

    @Test("long flat chains parse and evaluate without recursion; deep nesting is an error, not a crash")
    func sizeLimits() throws {
        // 20,000 terms of one chain: one node, whatever the length.
        let chain = (0..<20_000).map { "id = \($0)" }.joined(separator: " or ")
        guard case .or(let parts) = try QueryExpression(parsing: chain) else { Issue.record("not an or-chain"); return }
        #expect(parts.count == 20_000)
        let mixed = (0..<5_000).map { "(id > \($0) and id < \($0 + 2))" }.joined(separator: " or ")
        #expect(throws: Never.self) { _ = try QueryExpression(parsing: mixed) }

        let limit = QueryExpression.maximumDepth
        #expect(throws: Never.self) { _ = try QueryExpression(parsing: String(repeating: "not ", count: limit) + "id = 1") }
        #expect(throws: Never.self) { _ = try QueryExpression(parsing: String(repeating: "(", count: limit) + "id = 1" + String(repeating: ")", count: limit)) }
        for deep in [String(repeating: "not ", count: 6_000) + "id = 1",
                     String(repeating: "(", count: 20_000) + "id = 1" + String(repeating: ")", count: 20_000),
                     String(repeating: "not (", count: limit) + "id = 1" + String(repeating: ")", count: limit)] {
            #expect(performing: { _ = try QueryExpression(parsing: deep) }, throws: { error in
                (error as? QueryParseError)?.reason.contains("nested more than \(limit) levels") == true
            })
        }
    }
}
