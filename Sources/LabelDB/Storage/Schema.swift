/// What every sample of a store has in common: the embedding shape and the class vocabulary.
///
/// For example:
///
/// ```swift
/// let schema = try Schema(dimension: 512, elementType: .f32, classes: ["cat", "dog"])
/// ```
///
/// The schema is fixed when the store is created.
public struct Schema: Equatable, Sendable {
    /// How embedding elements are stored.
    public enum ElementType: String, Sendable, CaseIterable {
        /// IEEE 754 single precision, 4 bytes.
        case f32
        /// IEEE 754 half precision, 2 bytes; converted to `Float` on read.
        case f16

        /// Bytes per element.
        public var byteWidth: Int { self == .f32 ? 4 : 2 }

        /// The code stored on disk (format-spec/storage.md).
        var code: UInt8 { self == .f32 ? 1 : 2 }

        init?(code: UInt8) {
            switch code {
            case 1: self = .f32
            case 2: self = .f16
            default: return nil
            }
        }
    }

    /// The number of elements of every embedding.
    public let dimension: Int
    /// The element type of stored embeddings.
    public let elementType: ElementType
    /// The ordered class vocabulary: class index i names `classes[i]`.
    public let classes: [String]
    /// How many embeddings share one block (see format-spec/storage.md); chosen at creation.
    public let rowsPerBlock: Int

    /// Creates a schema, checking it.
    ///
    /// - Throws: ``StoreError/invalidSchema(_:)`` when the dimension is out of 1…65,536, or a class
    ///   name is empty, repeated, or contains a line break.
    /// The most classes a schema may have.
    public static let maxClasses = 1_000_000

    public init(dimension: Int, elementType: ElementType = .f32, classes: [String], rowsPerBlock: Int? = nil) throws {
        guard (1...65_536).contains(dimension) else {
            throw StoreError.invalidSchema("embedding dimension \(dimension) is outside 1…65536")
        }
        // Zero classes is a store of samples only (the CLI and the C API ask for at least one).
        guard classes.count <= Schema.maxClasses else {
            throw StoreError.invalidSchema("\(classes.count) classes, expected at most \(Schema.maxClasses)")
        }
        var seen = Set<String>()
        for (index, name) in classes.enumerated() {
            if name.isEmpty { throw StoreError.invalidSchema("class \(index) has an empty name") }
            if name.contains(where: \.isNewline) { throw StoreError.invalidSchema("class \(index) contains a line break") }
            if !seen.insert(name).inserted { throw StoreError.invalidSchema("class name '\(name)' appears twice (again at index \(index))") }
        }
        let blockRows = rowsPerBlock ?? Schema.defaultRowsPerBlock(rowBytes: dimension * elementType.byteWidth)
        guard (1...65_536).contains(blockRows) else {
            throw StoreError.invalidSchema("rows per block \(blockRows) is outside 1…65536")
        }
        self.init(dimension: dimension, elementType: elementType, classes: classes, rowsPerBlock: blockRows)
    }

    /// Unchecked, for records that were checked when they were written.
    init(dimension: Int, elementType: ElementType, classes: [String], rowsPerBlock: Int) {
        self.dimension = dimension
        self.elementType = elementType
        self.classes = classes
        self.rowsPerBlock = rowsPerBlock
    }

    /// About 512 KiB per block: large enough that the partial last overflow page wastes < 1%,
    /// small enough that replacing one embedding rewrites little. A power of two in 16…4096.
    static func defaultRowsPerBlock(rowBytes: Int) -> Int {
        var rows = 16
        while rows < 4096 && (rows * 2) * rowBytes <= 512 * 1024 { rows *= 2 }
        return rows
    }

    /// The index of the class named `name`, if any.
    public func classIndex(named name: String) -> Int? {
        classes.firstIndex(of: name)
    }
}
