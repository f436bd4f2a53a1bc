extension SampleBatch {
    /// Applies the metadata `taint` member rule: a row's `"taint"` member (`{"secrecy": [...],
    /// "integrity": [...]}`) adds its tags to `base`, the label of the whole import, and is
    /// removed from the metadata. Returns every row's label, or nil when no row has the member.
    ///
    /// - Throws: ``InputError`` naming `file` and the row's `location` for a malformed member.
    public static func takeTaintMembers(
        _ metadata: inout [[String: JSONValue]], base: TaintLabel, file: String, location: (Int) -> String
    ) throws -> [TaintLabel]? {
        var taints: [TaintLabel]? = nil
        for row in metadata.indices {
            guard let member = metadata[row].removeValue(forKey: "taint") else { continue }
            let parsed: TaintLabel
            do { parsed = try TaintLabel(json: member) } catch {
                throw InputError(file: file, location: location(row), reason: "\(error) in the \"taint\" member")
            }
            if taints == nil { taints = Array(repeating: base, count: metadata.count) }
            taints![row] = TaintLabel(secrecy: base.secrecy.union(parsed.secrecy), integrity: base.integrity.union(parsed.integrity))
        }
        return taints
    }
}
