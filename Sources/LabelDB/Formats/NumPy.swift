import Foundation

/// Reading and writing NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), little-endian,
/// C order. This is how embeddings, ids and labels enter and leave LabelDB.
///
/// For example:
///
/// ```swift
/// let matrix = try NumPyArray.read("emb.npy")
/// let floats = try matrix.floats()          // rows × columns, row-major
/// try NumPyArray.write(floats, shape: [rows, columns], to: "copy.npy")
/// ```
public struct NumPyArray: Sendable {
    /// The element types LabelDB reads and writes.
    public enum DType: String, Sendable, CaseIterable {
        case float16 = "f2", float32 = "f4", float64 = "f8"
        case int8 = "i1", int16 = "i2", int32 = "i4", int64 = "i8"
        case uint8 = "u1", uint16 = "u2", uint32 = "u4", uint64 = "u8"

        /// Bytes per element.
        public var size: Int { Int(rawValue.dropFirst())! }
        /// True for the float types.
        public var isFloat: Bool { rawValue.hasPrefix("f") }
        /// The `descr` string written in headers.
        var descr: String { size == 1 ? "|" + rawValue : "<" + rawValue }
    }

    /// The element type.
    public let dtype: DType
    /// The shape, outermost first.
    public let shape: [Int]
    /// The elements' little-endian bytes, in C order.
    public let data: [UInt8]

    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }

    // MARK: Reading

    /// Reads a whole `.npy` file.
    ///
    /// - Throws: ``InputError`` naming the file for a bad magic string, an unsupported version or
    ///   dtype (big-endian, objects, strings), a malformed header, or truncated data. Fortran-order
    ///   arrays (which numpy writes for any transposed array) are read and reordered to C order.
    public static func read(_ path: String) throws -> NumPyArray {
        try InputFile.checkRegularFile(path)
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw InputError(file: path, reason: "cannot open the file")
        }
        defer { try? handle.close() }
        let (dtype, shape, headerEnd, fortran) = try readHeader(handle, path: path)
        let byteCount = try dataSize(shape: shape, dtype: dtype, path: path)
        let fileSize = Int((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        let available = fileSize - headerEnd
        guard available >= byteCount else {
            throw InputError(file: path, reason: "truncated: shape \(shape) of \(dtype.descr) needs \(byteCount) bytes of data, the file has \(max(available, 0))")
        }
        guard available == byteCount else {
            throw InputError(file: path, reason: "\(available - byteCount) bytes after the data that shape \(shape) describes")
        }
        // Read straight into the array's storage: embedding files can be gigabytes.
        let fd = handle.fileDescriptor
        var failure: String? = nil
        let data = [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, initialized in
            var done = 0
            while done < byteCount {
                let got = Foundation.pread(fd, buffer.baseAddress! + done, min(byteCount - done, 1 << 30), off_t(headerEnd + done))
                if got <= 0 { failure = got == 0 ? "unexpected end of file" : String(cString: strerror(errno)); break }
                done += got
            }
            initialized = failure == nil ? byteCount : 0
        }
        if let failure { throw InputError(file: path, reason: "read failed: \(failure)") }
        let ordered = fortran && shape.count > 1 ? cOrder(fromFortran: data, shape: shape, elementSize: dtype.size) : data
        return NumPyArray(dtype: dtype, shape: shape, data: ordered)
    }

    /// The elements of a column-major (Fortran-order) array in row-major (C) order: one copy.
    static func cOrder(fromFortran data: [UInt8], shape: [Int], elementSize w: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: data.count)
        guard !data.isEmpty else { return out }
        // Fortran strides (in elements): the first index varies fastest.
        var strides = [Int](repeating: 1, count: shape.count)
        for axis in 1..<shape.count { strides[axis] = strides[axis - 1] * shape[axis - 1] }
        var index = [Int](repeating: 0, count: shape.count)
        data.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { target in
                var offset = 0  // the Fortran offset of `index`, kept as the C-order walk advances
                for element in 0..<(data.count / w) {
                    (target.baseAddress! + element * w).copyMemory(from: source.baseAddress! + offset * w, byteCount: w)
                    var axis = shape.count - 1
                    while axis >= 0 {
                        index[axis] += 1
                        offset += strides[axis]
                        if index[axis] < shape[axis] { break }
                        offset -= strides[axis] * shape[axis]
                        index[axis] = 0
                        axis -= 1
                    }
                }
            }
        }
        return out
    }

    private static func readHeader(_ handle: FileHandle, path: String) throws -> (DType, [Int], Int, Bool) {
        let preamble = [UInt8](try handle.read(upToCount: 10) ?? Data())
        guard preamble.count == 10, preamble[0] == 0x93, Array(preamble[1..<6]) == Array("NUMPY".utf8) else {
            throw InputError(file: path, reason: "not a NumPy .npy file (bad magic bytes)")
        }
        let major = preamble[6]
        var headerLength: Int
        var prefix = 10
        switch major {
        case 1:
            headerLength = Int(preamble[8]) | Int(preamble[9]) << 8
        case 2, 3:
            let more = [UInt8](try handle.read(upToCount: 2) ?? Data())
            guard more.count == 2 else { throw InputError(file: path, reason: "truncated header") }
            headerLength = Int(preamble[8]) | Int(preamble[9]) << 8 | Int(more[0]) << 16 | Int(more[1]) << 24
            prefix = 12
        default:
            throw InputError(file: path, reason: "unsupported .npy format version \(major).\(preamble[7])")
        }
        guard headerLength <= 1 << 20 else { throw InputError(file: path, reason: "header of \(headerLength) bytes is implausible") }
        let headerBytes = [UInt8](try handle.read(upToCount: headerLength) ?? Data())
        guard headerBytes.count == headerLength, let header = String(bytes: headerBytes, encoding: major == 3 ? .utf8 : .isoLatin1) else {
            throw InputError(file: path, reason: "truncated header")
        }
        let (dtype, fortran, shape) = try parseHeader(header, path: path)
        return (dtype, shape, prefix + headerLength, fortran)
    }

    /// The byte size of the data a header describes. The shape comes from the file, so the product
    /// is overflow-checked factor by factor: a plain `reduce(1, *)` traps on a crafted shape. Zero
    /// dimensions count as one in the check, so that callers may multiply any subset of the
    /// dimensions (a row's size, say) without trapping even when another dimension is zero.
    static func dataSize(shape: [Int], dtype: DType, path: String) throws -> Int {
        var bound = dtype.size
        for dim in shape {
            let (product, overflow) = bound.multipliedReportingOverflow(by: max(dim, 1))
            guard !overflow else { throw InputError(file: path, reason: "shape \(shape) is too large") }
            bound = product
        }
        return shape.contains(0) ? 0 : bound
    }

    /// Parses the Python dict literal of a header, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
    static func parseHeader(_ header: String, path: String) throws -> (DType, Bool, [Int]) {
        func value(of key: String) throws -> Substring {
            guard let keyRange = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\"") else {
                throw InputError(file: path, reason: "header has no '\(key)'")
            }
            var rest = header[keyRange.upperBound...].drop { $0 == " " }
            guard rest.first == ":" else { throw InputError(file: path, reason: "malformed header near '\(key)'") }
            rest = rest.dropFirst().drop { $0 == " " }
            return rest
        }
        // descr
        let descrText = try value(of: "descr")
        guard let quote = descrText.first, quote == "'" || quote == "\"",
              let close = descrText.dropFirst().firstIndex(of: quote) else {
            throw InputError(file: path, reason: "unsupported dtype (only plain numeric dtypes are read)")
        }
        let descr = String(descrText[descrText.index(after: descrText.startIndex)..<close])
        guard let order = descr.first, let dtype = DType(rawValue: String(descr.dropFirst())) else {
            throw InputError(file: path, reason: "unsupported dtype '\(descr)'; use float32, float16, float64 or an integer type")
        }
        guard order == "<" || order == "|" || order == "=" else {
            throw InputError(file: path, reason: "big-endian dtype '\(descr)' is not supported; convert with astype('<\(dtype.rawValue)')")
        }
        // fortran_order
        let fortranText = try value(of: "fortran_order")
        let fortran: Bool
        if fortranText.hasPrefix("True") { fortran = true } else if fortranText.hasPrefix("False") { fortran = false } else {
            throw InputError(file: path, reason: "malformed fortran_order")
        }
        // shape
        let shapeText = try value(of: "shape")
        guard shapeText.first == "(", let end = shapeText.firstIndex(of: ")") else {
            throw InputError(file: path, reason: "malformed shape")
        }
        let inner = shapeText[shapeText.index(after: shapeText.startIndex)..<end]
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "L", with: "")
            if trimmed.isEmpty { continue }
            guard let dim = Int(trimmed), dim >= 0 else { throw InputError(file: path, reason: "malformed shape '\(inner)'") }
            shape.append(dim)
        }
        return (dtype, fortran, shape)
    }

    // MARK: Conversions

    /// The elements as `Float` (from f2, f4 or f8).
    ///
    /// - Throws: ``InputError`` when the dtype is not a float type.
    public func floats(file: String = "array") throws -> [Float] {
        let n = count
        return try data.withUnsafeBytes { raw -> [Float] in
            switch dtype {
            case .float32:
                return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
                    UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: n * 4)
                    initialized = n
                }
            case .float16:
                return (0..<n).map { Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))) }
            case .float64:
                return (0..<n).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
            default:
                throw InputError(file: file, reason: "dtype \(dtype.descr) is not a float type (expected <f4, <f2 or <f8)")
            }
        }
    }

    /// The elements as 64-bit integers (from any integer dtype), checked to lie in `range`.
    public func integers(file: String = "array", in range: ClosedRange<Int64> = .min ... .max) throws -> [Int64] {
        let n = count
        var out = [Int64](repeating: 0, count: n)
        try data.withUnsafeBytes { raw in
            for i in 0..<n {
                let v: Int64
                switch dtype {
                case .int8: v = Int64(raw.load(fromByteOffset: i, as: Int8.self))
                case .uint8: v = Int64(raw[i])
                case .int16: v = Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
                case .uint16: v = Int64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                case .int32: v = Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                case .uint32: v = Int64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                case .int64: v = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
                case .uint64:
                    let u = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                    guard u <= UInt64(Int64.max) else { throw InputError(file: file, location: "element \(i)", reason: "\(u) is out of range \(range)") }
                    v = Int64(u)
                default: throw InputError(file: file, reason: "dtype \(dtype.descr) is not an integer type")
                }
                guard range.contains(v) else { throw InputError(file: file, location: "element \(i)", reason: "\(v) is out of range \(range)") }
                out[i] = v
            }
        }
        return out
    }

    /// The elements as ids: `<u8` taken as is, `<i8` (and smaller signed types) must be ≥ 0.
    public func ids(file: String = "array") throws -> [UInt64] {
        if dtype == .uint64 {
            return data.withUnsafeBytes { raw in
                (0..<count).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)) }
            }
        }
        guard !dtype.isFloat else { throw InputError(file: file, reason: "ids must be integers (<u8 or <i8), not \(dtype.descr)") }
        return try integers(file: file, in: 0 ... .max).map { UInt64($0) }
    }

    // MARK: Writing

    /// Writes a `.npy` (version 1.0) file with the given element bytes.
    public static func write(dtype: DType, shape: [Int], data: UnsafeRawBufferPointer, to path: String) throws {
        let writer = try NumPyWriter(path: path, dtype: dtype, shape: shape)
        try writer.append(data)
        try writer.finish()
    }

    /// Writes `values` as a float32 array of `shape`.
    public static func write(_ values: [Float], shape: [Int], to path: String) throws {
        try values.withUnsafeBytes { try write(dtype: .float32, shape: shape, data: $0, to: path) }
    }

    /// Writes `values` as a 1-D uint64 array.
    public static func write(_ values: [UInt64], to path: String) throws {
        try values.withUnsafeBytes { try write(dtype: .uint64, shape: [values.count], data: $0, to: path) }
    }

    /// Writes `values` as an int32 array of `shape`.
    public static func write(_ values: [Int32], shape: [Int], to path: String) throws {
        try values.withUnsafeBytes { try write(dtype: .int32, shape: shape, data: $0, to: path) }
    }
}

/// Writes a `.npy` file in pieces, so exports stream in constant memory.
/// The shape is fixed up front (``finish()`` checks that exactly that much data arrived), or only
/// its trailing dimensions are, and the row count is written into the header at ``finish()``.
public final class NumPyWriter {
    private let handle: FileHandle
    private let path: String
    private let dtype: NumPyArray.DType
    /// The shape after the first dimension, when the row count is only known at the end.
    private let rowShape: [Int]?
    private let headerLength: Int
    private let expectedBytes: Int?
    private var writtenBytes = 0
    private var buffer: [UInt8] = []
    private var finished = false

    /// Creates (or truncates) `path` and writes the header.
    public init(path: String, dtype: NumPyArray.DType, shape: [Int]) throws {
        (handle, self.path, self.dtype, rowShape) = (try NumPyWriter.create(path), path, dtype, nil)
        expectedBytes = shape.reduce(1, *) * dtype.size
        buffer = NumPyWriter.header(dtype: dtype, shape: shape, padTo: nil)
        headerLength = buffer.count
    }

    /// Creates (or truncates) `path` for rows of shape `rowShape` (`[]` for scalars), however many
    /// arrive: the header reserves room for any row count and ``finish()`` fills it in.
    public init(path: String, dtype: NumPyArray.DType, rowShape: [Int]) throws {
        (handle, self.path, self.dtype, self.rowShape) = (try NumPyWriter.create(path), path, dtype, rowShape)
        expectedBytes = nil
        // The widest count a header may need: 20 digits.
        buffer = NumPyWriter.header(dtype: dtype, shape: [Int.max] + rowShape, padTo: nil)
        headerLength = buffer.count
    }

    private static func create(_ path: String) throws -> FileHandle {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw InputError(file: path, reason: "cannot create the file")
        }
        return handle
    }

    /// The magic, version, header length and header dictionary, padded with spaces so the data
    /// starts on a 64-byte boundary (as numpy does), or to exactly `padTo` bytes in all.
    private static func header(dtype: NumPyArray.DType, shape: [Int], padTo total: Int?) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(dtype.descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        let padding = total.map { $0 - unpadded } ?? (64 - unpadded % 64) % 64
        header += String(repeating: " ", count: padding) + "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let length = UInt16(header.utf8.count)
        bytes += [UInt8(length & 0xFF), UInt8(length >> 8)]
        bytes += Array(header.utf8)
        return bytes
    }

    /// Appends element bytes.
    public func append(_ data: UnsafeRawBufferPointer) throws {
        buffer.append(contentsOf: data)
        writtenBytes += data.count
        if buffer.count >= 1 << 22 { try flush() }
    }

    /// Appends floats (as float32).
    public func append(_ values: [Float]) throws {
        try values.withUnsafeBytes { try append($0) }
    }

    private func flush() throws {
        do { try handle.write(contentsOf: buffer) } catch {
            throw StoreError.io(path: path, reason: "write failed: \(error.localizedDescription)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes and closes the file; throws if the data does not match the shape (or, for a file of
    /// rows, is not a whole number of rows). A second call does nothing.
    public func finish() throws {
        guard !finished else { return }
        finished = true
        try flush()
        defer { try? handle.close() }
        if let rowShape {
            let rowBytes = rowShape.reduce(1, *) * dtype.size
            guard rowBytes > 0 ? writtenBytes % rowBytes == 0 : writtenBytes == 0 else {
                throw InputError(file: path, reason: "wrote \(writtenBytes) bytes of data, not a whole number of \(rowBytes)-byte rows")
            }
            let rows = rowBytes > 0 ? writtenBytes / rowBytes : 0
            do {
                try handle.seek(toOffset: 0)
                try handle.write(contentsOf: NumPyWriter.header(dtype: dtype, shape: [rows] + rowShape, padTo: headerLength))
            } catch {
                throw StoreError.io(path: path, reason: "write failed: \(error.localizedDescription)")
            }
            return
        }
        guard writtenBytes == expectedBytes else {
            throw InputError(file: path, reason: "wrote \(writtenBytes) bytes of data, the shape needs \(expectedBytes ?? 0)")
        }
    }
}
