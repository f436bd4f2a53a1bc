/// A query filter, parsed from text such as
/// `label(teacher).top1 = 'cat' and label(teacher).confidence < 0.6 and not tagged('pii')`.
///
/// Grammar (keywords are lower case; strings use single quotes, `''` inside one is a quote):
///
/// ```
/// expr       := or
/// or         := and ('or' and)*
/// and        := not ('and' not)*
/// not        := 'not' not | primary
/// primary    := '(' expr ')' | 'tagged' '(' STRING ')' | 'flows_to' '(' STRING ')' | label '.' 'has' '(' class ')'
///             | label '.' 'source_tagged' '(' STRING ')' | 'agree' '(' ref ',' ref ')' | operand OP value
/// operand    := 'id' | 'meta' '.' NAME | label '.' ('top1' | 'confidence' | 'version' | 'agent' | 'prob' '(' class ')')
/// label      := 'label' '(' ref ')'          ref := NAME ('@' INTEGER)?
/// class      := STRING | INTEGER | label '.' 'top1'
/// OP         := '=' | '!=' | '<' | '<=' | '>' | '>='
/// value      := STRING | NUMBER | label '.' 'top1'   (the last only after label(…).top1)
/// ```
///
/// A chain of `and`s (or of `or`s) is one node with a list of operands, so thousands of terms
/// cost no recursion; nesting (parentheses and `not`) is limited to ``maximumDepth`` levels, so
/// no filter can exhaust the stack.
public indirect enum QueryExpression: Equatable, Sendable, CustomStringConvertible {
    /// All hold (two or more operands).
    case and([QueryExpression])
    /// At least one holds (two or more operands).
    case or([QueryExpression])
    /// It does not hold.
    case not(QueryExpression)
    /// `operand OP value`.
    case comparison(QueryOperand, QueryComparison, QueryValue)
    /// The sample's taint label has this secrecy or integrity tag.
    case tagged(String)
    /// The sample's taint label flows to this one, written as a clearance
    /// (`secrecy=a,b;integrity=c`): its secrecy tags are among a, b and its integrity includes c.
    case flowsTo(String)
    /// The multi-label (or hard label) in the set includes the class.
    case has(LabelSetReference, QueryValue)
    /// `label(SET).source_tagged('T')`: the source of the import that wrote the sample's row (a
    /// projector: the projector version's own label) names tag T. Unlike `tagged`, which reads
    /// the row's label (sample ⊔ source, where integrity is lost unless the sample has it too),
    /// this asks what vouches for the labeller itself.
    case sourceTagged(LabelSetReference, String)

    /// The deepest nesting of parentheses and `not`s a filter may have.
    public static let maximumDepth = 200

    /// Parses a filter.
    ///
    /// - Throws: ``QueryParseError`` with the 1-based column of the problem, also for nesting
    ///   deeper than ``maximumDepth``.
    public init(parsing text: String) throws {
        var parser = QueryParser(text)
        self = try parser.parseExpression()
        try parser.expectEnd()
    }

    /// The canonical text: parsing it gives back the same expression.
    public var description: String {
        switch self {
        case .and(let parts): "(" + parts.map(\.description).joined(separator: " and ") + ")"
        case .or(let parts): "(" + parts.map(\.description).joined(separator: " or ") + ")"
        case .not(let a): "not \(a)"
        case .comparison(let operand, let op, let value): "\(operand) \(op.rawValue) \(value)"
        case .tagged(let tag): "tagged(\(QueryValue.string(tag)))"
        case .flowsTo(let label): "flows_to(\(QueryValue.string(label)))"
        case .has(let set, let c): "label(\(set)).has(\(c))"
        case .sourceTagged(let set, let tag): "label(\(set)).source_tagged(\(QueryValue.string(tag)))"
        }
    }
}

/// What a comparison looks at.
public enum QueryOperand: Equatable, Sendable, CustomStringConvertible {
    /// The sample id.
    case id
    /// A top-level metadata field.
    case meta(String)
    /// The top-1 class (by name or index) in a label set.
    case top1(LabelSetReference)
    /// The probability of the top-1 class.
    case confidence(LabelSetReference)
    /// The probability of one class (by name or index).
    case probability(LabelSetReference, QueryValue)
    /// The label-set version that wrote the sample's label.
    case labelVersion(LabelSetReference)
    /// `label(SET).agent`: who produced the sample's row (the agent of the import that wrote it;
    /// a projector's: the agent of its fit), compared as a string.
    case agent(LabelSetReference)
    /// `label(SET).views`: the number of views of the sample in a per-view set (0 without a row).
    case viewCount(LabelSetReference)
    /// `label(SET).any_view.top1`, `.confidence`, `.prob(C)`: true when any view of the sample in
    /// a per-view set meets the comparison.
    case anyView(LabelSetReference, ViewProperty)

    public var description: String {
        switch self {
        case .id: "id"
        case .meta(let field): "meta.\(field)"
        case .top1(let set): "label(\(set)).top1"
        case .confidence(let set): "label(\(set)).confidence"
        case .probability(let set, let c): "label(\(set)).prob(\(c))"
        case .labelVersion(let set): "label(\(set)).version"
        case .agent(let set): "label(\(set)).agent"
        case .viewCount(let set): "label(\(set)).views"
        case .anyView(let set, .top1): "label(\(set)).any_view.top1"
        case .anyView(let set, .confidence): "label(\(set)).any_view.confidence"
        case .anyView(let set, .probability(let c)): "label(\(set)).any_view.prob(\(c))"
        }
    }
}

/// What `label(SET).any_view.PROPERTY` compares, view by view (as the per-sample terms of the
/// same names compare a sample's label).
public enum ViewProperty: Equatable, Sendable {
    /// The view label's top-1 class.
    case top1
    /// The probability of the view label's top-1 class.
    case confidence
    /// The probability of one class (by name or index).
    case probability(QueryValue)
}

/// A comparison operator.
public enum QueryComparison: String, Equatable, Sendable, CaseIterable {
    case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
}

/// A literal.
public enum QueryValue: Equatable, Sendable, CustomStringConvertible {
    /// A quoted string.
    case string(String)
    /// A whole number (exact up to 2⁶⁴ − 1, for ids).
    case integer(UInt64)
    /// Any other number.
    case number(Double)
    /// `label(B).top1` where a class goes: the sample's top-1 class in B, so filters can compare
    /// two label sets (a sample B does not label matches no such comparison, `!=` included).
    case labelTop1(LabelSetReference)

    public var description: String {
        switch self {
        case .string(let s): "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
        case .integer(let i): "\(i)"
        case .number(let d): "\(d)"
        case .labelTop1(let set): "label(\(set)).top1"
        }
    }
}

/// A filter that does not parse: where (1-based column) and why.
public struct QueryParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The 1-based column of the problem.
    public let column: Int
    /// What was expected or found.
    public let reason: String
    public var description: String { "column \(column): \(reason)" }
}

private struct QueryParser {
    enum Token: Equatable {
        case word(String), string(String), number(String), symbol(String), end
    }

    let scalars: [Character]
    var position = 0
    var token: Token = .end
    var tokenColumn = 1
    /// The current nesting of parentheses and `not`s.
    var depth = 0

    init(_ text: String) {
        scalars = Array(text)
    }

    func error(_ reason: String, at column: Int? = nil) -> QueryParseError {
        QueryParseError(column: column ?? tokenColumn, reason: reason)
    }

    mutating func advance() throws {
        while position < scalars.count, scalars[position].isWhitespace { position += 1 }
        tokenColumn = position + 1
        guard position < scalars.count else { token = .end; return }
        let c = scalars[position]
        if c.isLetter || c == "_" {
            var word = ""
            while position < scalars.count, scalars[position].isLetter || scalars[position].isNumber || "_-:".contains(scalars[position]) {
                word.append(scalars[position]); position += 1
            }
            token = .word(word)
        } else if c.isNumber || (c == "-" && position + 1 < scalars.count && scalars[position + 1].isNumber) || c == "." && position + 1 < scalars.count && scalars[position + 1].isNumber {
            var text = String(c)
            position += 1
            while position < scalars.count, scalars[position].isNumber || ".eE".contains(scalars[position])
                || ("+-".contains(scalars[position]) && "eE".contains(scalars[position - 1])) {
                text.append(scalars[position]); position += 1
            }
            token = .number(text)
        } else if c == "'" {
            var text = ""
            position += 1
            while true {
                guard position < scalars.count else { throw error("unterminated string") }
                if scalars[position] == "'" {
                    if position + 1 < scalars.count, scalars[position + 1] == "'" { text.append("'"); position += 2; continue }
                    position += 1
                    break
                }
                text.append(scalars[position]); position += 1
            }
            token = .string(text)
        } else if "<>!=".contains(c) {
            var op = String(c)
            position += 1
            if position < scalars.count, scalars[position] == "=" { op.append("="); position += 1 }
            guard QueryComparison(rawValue: op) != nil else { throw error("unknown operator '\(op)'") }
            token = .symbol(op)
        } else if "().@,".contains(c) {
            token = .symbol(String(c))
            position += 1
        } else {
            throw error("unexpected character '\(c)'")
        }
    }

    mutating func expectSymbol(_ s: String) throws {
        if token == .end { try advance() }
        guard token == .symbol(s) else { throw error("expected '\(s)'") }
        try advance()
    }

    mutating func expectEnd() throws {
        guard token == .end else { throw error("unexpected text after the expression") }
    }

    mutating func parseExpression() throws -> QueryExpression {
        if position == 0 { try advance() }
        return try parseOr()
    }

    mutating func parseOr() throws -> QueryExpression {
        var parts = [try parseAnd()]
        while token == .word("or") {
            try advance()
            parts.append(try parseAnd())
        }
        return parts.count == 1 ? parts[0] : .or(parts)
    }

    mutating func parseAnd() throws -> QueryExpression {
        var parts = [try parseNot()]
        while token == .word("and") {
            try advance()
            parts.append(try parseNot())
        }
        return parts.count == 1 ? parts[0] : .and(parts)
    }

    mutating func parseNot() throws -> QueryExpression {
        if token == .word("not") {
            try enter()
            defer { depth -= 1 }
            try advance()
            return .not(try parseNot())
        }
        return try parsePrimary()
    }

    /// One level deeper (a `not` or a parenthesis); the parser and every walk of the tree recurse
    /// per level, so the depth is bounded before the stack is.
    mutating func enter() throws {
        depth += 1
        guard depth <= QueryExpression.maximumDepth else {
            throw error("nested more than \(QueryExpression.maximumDepth) levels deep (parentheses and not)")
        }
    }

    mutating func parsePrimary() throws -> QueryExpression {
        switch token {
        case .symbol("("):
            try enter()
            defer { depth -= 1 }
            try advance()
            let inner = try parseOr()
            guard token == .symbol(")") else { throw error("expected ')'") }
            try advance()
            return inner
        case .word("tagged"):
            try advance()
            try expectSymbol("(")
            guard case .string(let tag) = token else { throw error("expected a quoted tag") }
            try advance()
            try expectSymbol(")")
            return .tagged(tag)
        case .word("flows_to"):
            try advance()
            try expectSymbol("(")
            let column = tokenColumn
            guard case .string(let label) = token else { throw error("expected a quoted label such as 'secrecy=a,b;integrity=c'") }
            guard (try? Clearance(parsing: label)) != nil else { throw error("'\(label)' is not a label (expected 'secrecy=a,b;integrity=c')", at: column) }
            try advance()
            try expectSymbol(")")
            return .flowsTo(label)
        case .word("agree"):
            // agree(A, B): the two top-1 classes are equal.
            try advance()
            try expectSymbol("(")
            let a = try bareReference()
            try expectSymbol(",")
            let b = try bareReference()
            try expectSymbol(")")
            return .comparison(.top1(a), .equal, .labelTop1(b))
        case .word("id"):
            try advance()
            return try comparison(.id)
        case .word("meta"):
            try advance()
            try expectSymbol(".")
            guard case .word(let field) = token else { throw error("expected a metadata field name") }
            try advance()
            return try comparison(.meta(field))
        case .word("label"):
            try advance()
            let set = try labelReference()
            try expectSymbol(".")
            let column = tokenColumn
            guard case .word(let property) = token else { throw error("expected top1, confidence, version, agent, prob(…), has(…), source_tagged(…), views or any_view") }
            try advance()
            switch property {
            case "top1": return try comparison(.top1(set))
            case "confidence": return try comparison(.confidence(set))
            case "version": return try comparison(.labelVersion(set))
            case "prob": return try comparison(.probability(set, try classArgument()))
            case "has": return .has(set, try classArgument())
            case "agent": return try comparison(.agent(set))
            case "views": return try comparison(.viewCount(set))
            case "any_view":
                // Any view of a per-view set: .top1, .confidence or .prob(C) of each view's label.
                try expectSymbol(".")
                let innerColumn = tokenColumn
                guard case .word(let inner) = token else { throw error("expected top1, confidence or prob(…) after any_view.") }
                try advance()
                switch inner {
                case "top1": return try comparison(.anyView(set, .top1))
                case "confidence": return try comparison(.anyView(set, .confidence))
                case "prob": return try comparison(.anyView(set, .probability(try classArgument())))
                default: throw error("unknown view property '\(inner)' (expected top1, confidence or prob)", at: innerColumn)
                }
            case "source_tagged":
                try expectSymbol("(")
                guard case .string(let tag) = token else { throw error("expected a quoted tag") }
                try advance()
                try expectSymbol(")")
                return .sourceTagged(set, tag)
            default: throw error("unknown label property '\(property)' (expected top1, confidence, version, agent, prob, has, source_tagged, views or any_view)", at: column)
            }
        case .end:
            throw error("unexpected end of the expression")
        default:
            throw error("expected a condition (id, meta.FIELD, label(SET)…, tagged(…), flows_to(…), not, or '(')")
        }
    }

    mutating func labelReference() throws -> LabelSetReference {
        try expectSymbol("(")
        let reference = try bareReference()
        try expectSymbol(")")
        return reference
    }

    /// `label(B).top1` as a value, the `label` keyword being the current token.
    mutating func labelTop1Value() throws -> QueryValue {
        try advance()
        let reference = try labelReference()
        try expectSymbol(".")
        guard token == .word("top1") else { throw error("expected top1: a class can come from label(…).top1") }
        try advance()
        return .labelTop1(reference)
    }

    /// NAME or NAME@VERSION.
    mutating func bareReference() throws -> LabelSetReference {
        guard case .word(let name) = token else { throw error("expected a label set name") }
        try advance()
        var version: Int? = nil
        if token == .symbol("@") {
            try advance()
            guard case .number(let text) = token, let v = Int(text), v >= 1 else { throw error("expected a version number") }
            version = v
            try advance()
        }
        return LabelSetReference(name: name, version: version)
    }

    mutating func classArgument() throws -> QueryValue {
        try expectSymbol("(")
        if token == .word("label") {
            let value = try labelTop1Value()
            try expectSymbol(")")
            return value
        }
        let column = tokenColumn
        let value = try literal()
        if case .number = value { throw error("a class is a quoted name or a whole number", at: column) }
        try expectSymbol(")")
        return value
    }

    mutating func comparison(_ operand: QueryOperand) throws -> QueryExpression {
        guard case .symbol(let s) = token, let op = QueryComparison(rawValue: s) else {
            throw error("expected a comparison (=, !=, <, <=, >, >=)")
        }
        try advance()
        if case .top1 = operand, token == .word("label") { return .comparison(operand, op, try labelTop1Value()) }
        if case .anyView(_, .top1) = operand, token == .word("label") { return .comparison(operand, op, try labelTop1Value()) }
        let column = tokenColumn
        let value = try literal()
        if operand == .id {
            // A number past 2^64 − 1 or with a fraction would otherwise compare as a double.
            guard case .integer = value else { throw error("an id is a whole number from 0 to 18446744073709551615", at: column) }
        }
        return .comparison(operand, op, value)
    }

    mutating func literal() throws -> QueryValue {
        let column = tokenColumn
        switch token {
        case .string(let s):
            try advance()
            return .string(s)
        case .number(let text):
            try advance()
            if let i = UInt64(text) { return .integer(i) }
            guard let d = Double(text), d.isFinite else { throw error("'\(text)' is not a number", at: column) }
            return .number(d)
        default:
            throw error("expected a quoted string or a number")
        }
    }
}
