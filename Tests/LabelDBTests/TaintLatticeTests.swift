import Testing
@testable import LabelDB

/// Lattice laws of taint labels, as property tests over seeded random labels.
@Suite("Taint lattice")
struct TaintLatticeTests {
    static let universe = ["pii", "licensed:getty", "customer:acme", "human-reviewed", "trusted-teacher"]

    func randomTags(_ rng: inout SplitMix64, allowAll: Bool) -> TagSet {
        if allowAll && Int.random(in: 0..<6, using: &rng) == 0 { return .all }
        return .tags(Set(Self.universe.filter { _ in Bool.random(using: &rng) }))
    }

    func randomLabels(_ count: Int, seed: UInt64) -> [TaintLabel] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in TaintLabel(secrecy: randomTags(&rng, allowAll: false), integrity: randomTags(&rng, allowAll: true)) } + [.bottom]
    }

    @Test("join and meet are associative, commutative, idempotent and absorb each other")
    func laws() {
        let labels = randomLabels(14, seed: 1)
        for a in labels {
            #expect(a.join(a) == a && a.meet(a) == a)
            for b in labels {
                #expect(a.join(b) == b.join(a) && a.meet(b) == b.meet(a))
                #expect(a.join(a.meet(b)) == a && a.meet(a.join(b)) == a)
                for c in labels {
                    #expect(a.join(b).join(c) == a.join(b.join(c)))
                    #expect(a.meet(b).meet(c) == a.meet(b.meet(c)))
                }
            }
        }
    }

    @Test("⊑ is a partial order, join is the least upper bound, bottom flows everywhere")
    func order() {
        let labels = randomLabels(14, seed: 2)
        for a in labels {
            #expect(a.flows(to: a))
            #expect(TaintLabel.bottom.flows(to: a))
            for b in labels {
                if a.flows(to: b) && b.flows(to: a) { #expect(a == b) }
                let j = a.join(b)
                #expect(a.flows(to: j) && b.flows(to: j))
                #expect(a.meet(b).flows(to: a) && a.meet(b).flows(to: b))
                for c in labels {
                    if a.flows(to: b) && b.flows(to: c) { #expect(a.flows(to: c)) }
                    // Least: every upper bound of a and b is above the join.
                    if a.flows(to: c) && b.flows(to: c) { #expect(j.flows(to: c)) }
                }
            }
        }
    }

    @Test("clearances: parsing, and what they admit")
    func clearances() throws {
        let reader = try Clearance(parsing: "secrecy=pii,licensed:getty;integrity=human-reviewed")
        #expect(reader.admits(TaintLabel(secrecy: ["pii"], integrity: ["human-reviewed", "trusted-teacher"])))
        #expect(!reader.admits(TaintLabel(secrecy: ["customer:acme"], integrity: ["human-reviewed"])))
        #expect(!reader.admits(TaintLabel(secrecy: [], integrity: [])))
        #expect(Clearance.public.admits(.bottom))
        #expect(!Clearance.public.admits(TaintLabel(secrecy: ["pii"], integrity: [])))
        #expect(Clearance.all.admits(TaintLabel(secrecy: ["pii"], integrity: [])))
        #expect(try Clearance(parsing: "all") == .all)
        #expect(try Clearance(parsing: "") == .public)
        #expect(try Clearance(parsing: "secrecy=;integrity=") == .public)
        #expect(try Clearance(parsing: "integrity=ok;secrecy=a,b") == Clearance(allowedSecrecy: .tags(["a", "b"]), requiredIntegrity: ["ok"]))
        // Nothing in a clearance is guessed: empty parts, empty tags and repeated parts are errors.
        for bad in ["secrecy", "secret=a", "secrecy=a b", "integrity=,;x=1", "secrecy=é", "secrecy=pii,", ";;;", "secrecy=pii;",
                    "secrecy=pii;secrecy=pii", "secrecy=a,,b", ",", "secrecy=pii;;integrity=ok"] {
            #expect(throws: TaintError.self) { _ = try Clearance(parsing: bad) }
        }
    }
}
