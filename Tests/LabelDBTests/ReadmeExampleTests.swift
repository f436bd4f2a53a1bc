import Foundation
import Testing
import LabelDB

/// The README's Swift example, verbatim but for the directory, so it cannot rot.
@Suite("README")
struct ReadmeExampleTests {
    @Test("the README example runs and reads back what it wrote")
    func example() throws {
        let dir = TemporaryDirectory("readme")
        let corpus = dir.file("corpus")
        let store = try Store.create(at: corpus, schema: Schema(dimension: 4, classes: ["cat", "dog"]))
        try store.write(clearance: .all) { tx in                  // commits unless the closure throws
            try tx.put(Sample(id: 1, embedding: [0.1, 0.2, 0.3, 0.4], metadata: ["split": "train"]))
            try tx.put(Sample(id: 2, embedding: [0.4, 0.3, 0.2, 0.1], taint: TaintLabel(secrecy: ["pii"], integrity: [])))
        }
        let sample = try store.read(clearance: .public) { tx in try tx.sample(1) }   // a consistent snapshot
        let hidden = try store.read(clearance: .public) { tx in try tx.sample(2) }   // nil: pii does not flow to public
        #expect(sample?.metadata["split"]?.stringValue ?? "none" == "train")
        #expect(hidden == nil)
        store.close()
    }
}
