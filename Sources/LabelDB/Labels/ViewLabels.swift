/// Labels per augmented view (format 8, `format-spec/storage.md` §10.7): a per-view label set
/// holds, for each sample and version, the list of the views a teacher labelled — FKD's
/// random-resized crop, flip and RNG seed per epoch — each with its own hard and/or soft label.
/// The whole list is one label row of the sample, so versions, clearances, taint, deletion and
/// the block layout apply to views exactly as to per-sample labels, and one read returns every
/// view of a sample.

/// The augmentation parameters of one view of a sample: what the training loop needs to apply
/// the crop and flip the teacher saw.
public struct AugmentedView: Equatable, Hashable, Sendable {
    /// The view number, unique within a sample (0 … 2³² − 1); a sample's views are kept in
    /// ascending view number.
    public var view: Int
    /// The crop box `[x0, y0, x1, y1]` in relative coordinates: 0 ≤ x0 < x1 ≤ 1, 0 ≤ y0 < y1 ≤ 1.
    /// (Four lanes, not an array: a corpus has millions of views.)
    public var crop: SIMD4<Float>
    /// True when the crop is flipped horizontally.
    public var flip: Bool
    /// The training epoch the view was drawn for (0 … 65,535).
    public var epoch: Int
    /// The augmentation RNG seed (0 … 2³² − 1).
    public var seed: Int
    /// Any other parameters, as a JSON object's compact text (sorted keys), or nil.
    public var extra: String?

    /// A view's parameters, unchecked: an import checks the ranges below and its extra JSON.
    public init(view: Int, crop: SIMD4<Float>, flip: Bool = false, epoch: Int = 0, seed: Int = 0, extra: String? = nil) {
        self.view = view
        self.crop = crop
        self.flip = flip
        self.epoch = epoch
        self.seed = seed
        self.extra = extra
    }

    /// Bytes of the fixed record: crop 4 × f32, flip u8, epoch u16, seed u32, one reserved byte.
    public static let recordSize = 24

    /// Why the parameters cannot be stored, or nil: the ranges above. (The extra JSON is checked
    /// where it comes from: an import normalises it, ``ViewImport/normalised(_:row:)``, and a read
    /// checks the stored text, ``ViewSection/parameters(_:_:)``; `init(json:)` builds it from an object.)
    func problem() -> String? {
        guard view >= 0, view <= Int(UInt32.max) else { return "view number \(view) is outside 0…\(UInt32.max)" }
        // Lane by lane, no array: every view read checks its record.
        for lane in 0..<4 where !(crop[lane].isFinite && crop[lane] >= 0 && crop[lane] <= 1) {
            return "crop \((0..<4).map { crop[$0] }) is outside [0, 1]"
        }
        guard crop[0] < crop[2], crop[1] < crop[3] else { return "crop \((0..<4).map { crop[$0] }) has zero area (needs x0 < x1 and y0 < y1)" }
        guard epoch >= 0, epoch <= Int(UInt16.max) else { return "epoch \(epoch) is outside 0…\(UInt16.max)" }
        guard seed >= 0, seed <= Int(UInt32.max) else { return "seed \(seed) is outside 0…\(UInt32.max)" }
        return nil
    }

    /// Appends the 24-byte record.
    func appendRecord(to out: inout [UInt8]) {
        for i in 0..<4 { let value = crop[i]; withUnsafeBytes(of: value.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        out.append(flip ? 1 : 0)
        withUnsafeBytes(of: UInt16(epoch).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(seed).littleEndian) { out.append(contentsOf: $0) }
        out.append(0)
    }

    /// The view numbered `view` from its 24-byte record; damage when the record could not have
    /// been written.
    init(view: Int, record bytes: UnsafeRawBufferPointer) throws {
        func f32(_ offset: Int) -> Float { Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))) }
        guard bytes[16] <= 1, bytes[23] == 0 else { throw RecordDecodingError(detail: "view \(view): flip byte \(bytes[16]), reserved byte \(bytes[23])") }
        self.init(view: view, crop: SIMD4(f32(0), f32(4), f32(8), f32(12)), flip: bytes[16] == 1,
                  epoch: Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 17, as: UInt16.self))),
                  seed: Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 19, as: UInt32.self))))
        if let problem = problem() { throw RecordDecodingError(detail: "view \(view): \(problem)") }
    }
}

extension AugmentedView {
    /// The members a views line gives by name; any other member is kept as extra JSON.
    static let namedMembers: Set<String> = ["view", "crop", "flip", "epoch", "seed"]

    /// A view from one line of a views file: `{"view": 3, "crop": [x0, y0, x1, y1], "flip":
    /// true, "epoch": 1, "seed": 42, …}` — `view` and `crop` required, `flip` (false), `epoch`
    /// and `seed` (0) optional, any other member kept as the view's extra JSON (sorted keys).
    /// Throws a reason (without the file and line, which the caller names).
    public init(json value: JSONValue) throws {
        guard let object = value.objectValue else { throw ViewInputError(reason: "not a JSON object") }
        func integer(_ name: String, default fallback: Int?) throws -> Int {
            guard let member = object[name] else {
                guard let fallback else { throw ViewInputError(reason: "missing member '\(name)'") }
                return fallback
            }
            guard case .int(let v) = member else { throw ViewInputError(reason: "'\(name)' must be an integer, not \(member.serialized())") }
            return Int(v)
        }
        guard case .array(let box)? = object["crop"], box.count == 4, let numbers = Optional(box.compactMap(\.doubleValue)), numbers.count == 4 else {
            throw ViewInputError(reason: object["crop"] == nil ? "missing member 'crop'" : "'crop' must be [x0, y0, x1, y1], four numbers")
        }
        var flip = false
        if let member = object["flip"] {
            guard case .bool(let b) = member else { throw ViewInputError(reason: "'flip' must be true or false, not \(member.serialized())") }
            flip = b
        }
        let rest = object.filter { !Self.namedMembers.contains($0.key) }
        self.init(view: try integer("view", default: nil), crop: SIMD4(numbers.map { Float($0) }),
                  flip: flip, epoch: try integer("epoch", default: 0), seed: try integer("seed", default: 0),
                  extra: rest.isEmpty ? nil : JSONValue.object(rest).serialized())
        if let problem = problem() { throw ViewInputError(reason: problem) }
    }

    /// The view as a views-file line's object: the named members, then the extras.
    public var json: JSONValue {
        var object: [String: JSONValue] = [:]
        if let extra, case .object(let members)? = try? JSONValue.parse(extra) { object = members }
        object["view"] = .int(Int64(view))
        // Each coordinate in its shortest f32 form (0.1, not 0.10000000149011612).
        object["crop"] = .array((0..<4).map { .double(Double("\(crop[$0])") ?? Double(crop[$0])) })
        object["flip"] = .bool(flip)
        object["epoch"] = .int(Int64(epoch))
        object["seed"] = .int(Int64(seed))
        return .object(object)
    }
}

/// Why one views line is not a view (``AugmentedView/init(json:)``).
public struct ViewInputError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What is wrong with the line.
    public let reason: String
    /// The reason.
    public var description: String { reason }
}

/// One view of a sample with its label.
public struct ViewLabel: Equatable, Sendable {
    /// The view's augmentation parameters.
    public var parameters: AugmentedView
    /// The view's hard label, if the set's rows carry one.
    public var hard: Int?
    /// The view's decoded soft label (C probabilities summing to 1), if the rows carry one.
    public var soft: [Float]?

    /// A view label.
    public init(parameters: AugmentedView, hard: Int? = nil, soft: [Float]? = nil) {
        self.parameters = parameters
        self.hard = hard
        self.soft = soft
    }

    /// The most probable class and its probability (ties: the smaller class), as ``Label/top1``.
    public var top1: (classIndex: Int, confidence: Float)? { label.top1 }

    /// The view's label as a per-sample ``Label`` (version 0), for what reads one label at a time:
    /// top-1, distributions, query terms.
    public var label: Label { Label(version: 0, hard: hard, soft: soft) }
}

/// The view section of a per-view label row, borrowed from the block (format-spec §10.7): view
/// count n, n view numbers (strictly ascending), n 24-byte view records, then n hard labels
/// and/or n soft-label encodings, then, when any view has extra parameters, n lengths and the
/// extras' bytes. ``parse(codec:)`` checks the structure; the views are decoded on demand.
struct ViewSection {
    /// The row's flags: which per-view columns are present.
    let flags: UInt8
    let bytes: UnsafeRawBufferPointer

    /// Where each column starts, once parsed.
    struct Layout {
        var count: Int
        var records: Int
        var hard: Int?
        /// Where the soft encodings start, and their size when the codec's is fixed.
        var softStart: Int?
        var softSize: Int?
        /// Adaptive codecs only: each view's soft encoding's start, and the end of the last.
        var softStarts: [Int]?
        /// The extras' start offsets and the end of the last (n + 1 values).
        var extras: [Int]?
    }

    /// The structure, checked: counts, ascending view numbers, and lengths that end exactly at
    /// the row's checksum. Classes and codec values are checked when a view is decoded.
    func parse(codec: SoftLabelCodec?, classCount: Int) throws -> Layout {
        guard flags & (LabelRecord.hasHard | LabelRecord.hasSoft) != 0 else { throw RecordDecodingError(detail: "a per-view row with neither hard nor soft labels") }
        var reader = ByteReader(bytes)
        let count = Int(try reader.u32("view count"))
        let minimum = 4 + AugmentedView.recordSize
        guard count >= 1, count <= reader.remaining / minimum else { throw RecordDecodingError(detail: "view count \(count) does not fit the row") }
        var previous: UInt32? = nil
        for _ in 0..<count {
            let number = try reader.u32("view number")
            if let previous, number <= previous { throw RecordDecodingError(detail: "view numbers not strictly ascending (\(number) after \(previous))") }
            previous = number
        }
        var layout = Layout(count: count, records: reader.offset)
        try reader.skip(count * AugmentedView.recordSize, "view records")
        if flags & LabelRecord.hasHard != 0 {
            layout.hard = reader.offset
            try reader.skip(4 * count, "view hard labels")
        }
        if flags & LabelRecord.hasSoft != 0 {
            guard let codec else { throw RecordDecodingError(detail: "soft label in a set without a codec") }
            layout.softStart = reader.offset
            if let fixed = codec.fixedSize(classCount: classCount) {
                layout.softSize = fixed
                try reader.skip(count * fixed, "view soft labels")
            } else {
                // Adaptive: each encoding's length is in its first u16.
                var starts = [reader.offset]
                for _ in 0..<count {
                    var peek = reader
                    try reader.skip(4 + 4 * Int(try peek.u16("adaptive K")), "view soft label")
                    starts.append(reader.offset)
                }
                layout.softStarts = starts
            }
        }
        if flags & LabelRecord.hasExtras != 0 {
            var ends = [0]
            for _ in 0..<count { ends.append(ends.last! + Int(try reader.u32("extra length"))) }
            let base = reader.offset
            try reader.skip(ends.last!, "view extras")
            layout.extras = ends.map { base + $0 }
        }
        guard reader.remaining == 0 else { throw RecordDecodingError(detail: "\(reader.remaining) trailing bytes in a view row") }
        return layout
    }

    /// The views, each with its label, every field checked and soft labels decoded.
    func decode(codec: SoftLabelCodec?, classCount: Int) throws -> [ViewLabel] {
        let layout = try parse(codec: codec, classCount: classCount)
        return try (0..<layout.count).map { i in
            var view = ViewLabel(parameters: try parameters(layout, i))
            view.hard = try hard(layout, i, classCount: classCount).map(Int.init)
            if let soft = soft(layout, i) {
                var out = [Float](repeating: 0, count: classCount)
                try out.withUnsafeMutableBufferPointer { try codec!.decode(soft, into: $0) }
                view.soft = out
            }
            return view
        }
    }

    /// The number of the view at `index`.
    func viewNumber(_ layout: Layout, _ index: Int) -> Int {
        Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 + 4 * index, as: UInt32.self)))
    }

    /// The parameters of the view at `index`, checked.
    func parameters(_ layout: Layout, _ index: Int) throws -> AugmentedView {
        let start = layout.records + index * AugmentedView.recordSize
        var view = try AugmentedView(view: viewNumber(layout, index), record: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + AugmentedView.recordSize)]))
        if let extras = layout.extras, extras[index + 1] > extras[index] {
            let raw = UnsafeRawBufferPointer(rebasing: bytes[extras[index]..<extras[index + 1]])
            guard case .object? = try? JSONValue.parse(raw), let text = String(validating: raw, as: UTF8.self) else {
                throw RecordDecodingError(detail: "view \(view.view): extra parameters are not a JSON object")
            }
            view.extra = text
        }
        return view
    }

    /// The hard label of the view at `index`, if the row carries hard labels; damage when it is
    /// not below the class count.
    func hard(_ layout: Layout, _ index: Int, classCount: Int) throws -> UInt32? {
        guard let start = layout.hard else { return nil }
        let hard = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: start + 4 * index, as: UInt32.self))
        guard Int(hard) < classCount else { throw RecordDecodingError(detail: "view \(viewNumber(layout, index)): hard label \(hard) ≥ \(classCount) classes") }
        return hard
    }

    /// The soft encoding of the view at `index`, if the row carries soft labels.
    func soft(_ layout: Layout, _ index: Int) -> UnsafeRawBufferPointer? {
        if let starts = layout.softStarts { return UnsafeRawBufferPointer(rebasing: bytes[starts[index]..<starts[index + 1]]) }
        guard let start = layout.softStart, let size = layout.softSize else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[(start + index * size)..<(start + (index + 1) * size)])
    }
}

/// Building the view section of a new row.
enum ViewRowEncoding {
    /// The flags and bytes of a row holding `views` (ascending view numbers) with their hard
    /// labels and/or soft encodings, aligned with them.
    static func encode(views: [AugmentedView], hard: [UInt32]?, soft: [[UInt8]]?) -> (flags: UInt8, bytes: [UInt8]) {
        var flags = LabelRecord.hasViews
        var out: [UInt8] = []
        func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        u32(UInt32(views.count))
        for view in views { u32(UInt32(view.view)) }
        for view in views { view.appendRecord(to: &out) }
        if let hard { flags |= LabelRecord.hasHard; hard.forEach(u32) }
        if let soft { flags |= LabelRecord.hasSoft; soft.forEach { out.append(contentsOf: $0) } }
        if views.contains(where: { $0.extra != nil }) {
            flags |= LabelRecord.hasExtras
            let extras = views.map { Array(($0.extra ?? "").utf8) }
            for extra in extras { u32(UInt32(extra.count)) }
            extras.forEach { out.append(contentsOf: $0) }
        }
        return (flags, out)
    }
}
