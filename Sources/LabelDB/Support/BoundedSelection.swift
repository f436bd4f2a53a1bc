/// The first `capacity` elements of a stream in a strict order, in bounded memory: elements
/// are appended and, whenever twice the capacity is held, sorted and trimmed (amortized
/// O(n log capacity), simpler than a heap and as fast for the sizes we keep).
struct BoundedSelection<Element> {
    let capacity: Int
    let areInIncreasingOrder: (Element, Element) -> Bool
    private var elements: [Element] = []

    init(capacity: Int, by areInIncreasingOrder: @escaping (Element, Element) -> Bool) {
        self.capacity = capacity
        self.areInIncreasingOrder = areInIncreasingOrder
    }

    mutating func insert(_ element: Element) {
        guard capacity > 0 else { return }
        elements.append(element)
        if capacity < Int.max / 2 && elements.count >= 2 * capacity { trim() }
    }

    /// The selected elements, first first.
    mutating func sorted() -> [Element] {
        trim()
        return elements
    }

    private mutating func trim() {
        elements.sort(by: areInIncreasingOrder)
        if elements.count > capacity { elements.removeLast(elements.count - capacity) }
    }
}
