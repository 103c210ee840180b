/// Reads a PyTorch `pytorch_model.bin` (the ZIP archive `torch.save` writes) without Python and without
/// executing anything: a small pickle machine that knows the opcodes a state dict uses and calls only
/// an allow-list of globals (`_rebuild_tensor_v2`, `_rebuild_parameter`, `OrderedDict`, the typed
/// storages). Any other global or opcode is an error that names it. Tensors point into the mapped file.
public enum TorchCheckpoint {
    /// Globals a state dict may name. Everything else is refused.
    static let allowedGlobals: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage", "torch.LongStorage", "torch.IntStorage",
    ]

    static func storageDType(_ name: String) -> DType? {
        switch name {
        case "torch.FloatStorage": return .f32
        case "torch.HalfStorage": return .f16
        case "torch.BFloat16Storage": return .bf16
        case "torch.LongStorage": return .i64
        case "torch.IntStorage": return .i32
        default: return nil
        }
    }

    /// Loads the state dict: parameter name → stored tensor.
    public static func load(path: String) throws -> [String: StoredTensor] {
        let file = try MappedFile(path: path)
        let zip = try ZipArchive(file: file)
        guard let pkl = zip.entries.values.first(where: { $0.name.hasSuffix("/data.pkl") || $0.name == "data.pkl" }) else {
            throw Mamba2Error.checkpoint(file: path, tensor: nil, reason: "no data.pkl in the archive: not a torch.save file")
        }
        let prefix = String(pkl.name.dropLast("data.pkl".count))
        var machine = PickleMachine(bytes: try zip.data(pkl), path: path) { key, dtype in
            guard let e = zip.entries[prefix + "data/" + key] else {
                throw Mamba2Error.checkpoint(file: path, tensor: nil, reason: "storage '\(key)' is missing from the archive")
            }
            guard e.method == 0 else {
                throw Mamba2Error.checkpoint(file: path, tensor: nil, reason: "storage '\(key)' is compressed; expected stored")
            }
            return (e.dataOffset, e.size)
        }
        let root = try machine.run()
        guard case let .dict(items) = root else {
            throw Mamba2Error.checkpoint(file: path, tensor: nil, reason: "the pickle's root is not a dict (a state dict is expected)")
        }
        var out: [String: StoredTensor] = [:]
        for (k, v) in items {
            guard case let .string(name) = k else { continue }
            guard case let .tensor(t) = v else {
                throw Mamba2Error.checkpoint(file: path, tensor: name, reason: "value is not a tensor")
            }
            out[name] = StoredTensor(name: name, dtype: t.dtype, shape: t.shape, file: file, offset: t.byteOffset, strides: t.strides)
        }
        return out
    }
}

/// Values on the pickle machine's stack.
indirect enum PickleValue {
    case none, mark
    case bool(Bool), int(Int), float(Double), string(String), bytes([UInt8])
    case tuple([PickleValue]), list([PickleValue]), dict([(PickleValue, PickleValue)])
    case global(String)
    case storage(dtype: DType, byteOffset: Int, bytes: Int, key: String)
    case tensor(TensorRef)

    struct TensorRef { let dtype: DType; let shape: [Int]; let strides: [Int]; let byteOffset: Int }
}

struct PickleMachine {
    let bytes: [UInt8]
    let path: String
    /// Resolves a storage key to (byte offset, byte size) in the file.
    let resolveStorage: (String, DType) throws -> (Int, Int)
    var i = 0
    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]

    init(bytes: [UInt8], path: String, resolveStorage: @escaping (String, DType) throws -> (Int, Int)) {
        self.bytes = bytes; self.path = path; self.resolveStorage = resolveStorage
    }

    func fail(_ reason: String) -> Mamba2Error {
        .checkpoint(file: path, tensor: nil, reason: "pickle: \(reason) (at byte \(i) of data.pkl)")
    }

    mutating func read(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - i else { throw fail("unexpected end of data") }
        defer { i += n }
        return bytes[i..<(i + n)]
    }
    /// An unsigned little-endian integer of n ≤ 8 bytes; one that does not fit an Int is an error.
    mutating func uint(_ n: Int) throws -> Int {
        var v: UInt64 = 0
        for (k, b) in try read(n).enumerated() { v |= UInt64(b) << (8 * UInt64(k)) }
        guard v <= UInt64(Int.max) else { throw fail("length or index \(v) is too large") }
        return Int(v)
    }

    /// Containers nest at most this deep (a state dict needs 4 or 5 levels); deeper input is refused, so that
    /// nothing recursive over a value (its destruction included) can exhaust the stack.
    static let depthLimit = 64

    /// The value's nesting depth, counted up to the limit + 1.
    static func depth(_ v: PickleValue, _ budget: Int = depthLimit + 1) -> Int {
        guard budget > 0 else { return 1 }
        switch v {
        case let .tuple(items), let .list(items): return 1 + (items.map { depth($0, budget - 1) }.max() ?? 0)
        case let .dict(items): return 1 + (items.map { max(depth($0.0, budget - 1), depth($0.1, budget - 1)) }.max() ?? 0)
        default: return 1
        }
    }

    /// Checks that values about to go into a container are shallow enough.
    func nest(_ children: [PickleValue]) throws {
        for c in children where Self.depth(c) >= Self.depthLimit {
            throw fail("containers nested deeper than \(Self.depthLimit) levels")
        }
    }
    mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw fail("stack underflow") }
        return v
    }
    /// Pops everything above the last MARK.
    mutating func popToMark() throws -> [PickleValue] {
        guard let m = marks.popLast(), m <= stack.count else { throw fail("no MARK on the stack") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }
    mutating func top() throws -> PickleValue {
        guard let v = stack.last else { throw fail("stack underflow") }
        return v
    }

    mutating func run() throws -> PickleValue {
        while true {
            let op = try read(1).first!
            switch op {
            case 0x80: _ = try read(1)                                  // PROTO
            case 0x95: _ = try read(8)                                  // FRAME
            case UInt8(ascii: "."): return try pop()                    // STOP
            case UInt8(ascii: "}"): stack.append(.dict([]))             // EMPTY_DICT
            case UInt8(ascii: "]"): stack.append(.list([]))             // EMPTY_LIST
            case UInt8(ascii: ")"): stack.append(.tuple([]))            // EMPTY_TUPLE
            case UInt8(ascii: "("): marks.append(stack.count)           // MARK
            case UInt8(ascii: "N"): stack.append(.none)
            case 0x88: stack.append(.bool(true))                         // NEWTRUE
            case 0x89: stack.append(.bool(false))                        // NEWFALSE
            case UInt8(ascii: "K"): stack.append(.int(try uint(1)))      // BININT1
            case UInt8(ascii: "M"): stack.append(.int(try uint(2)))      // BININT2
            case UInt8(ascii: "J"): stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))  // BININT
            case 0x8A:                                                   // LONG1
                let n = try uint(1)
                guard n <= 8 else { throw fail("integer of \(n) bytes is too large") }
                var v = 0
                for (k, b) in try read(n).enumerated() { v |= Int(b) << (8 * k) }
                if n > 0 && n < 8 && (v >> (8 * n - 1)) & 1 == 1 { v -= 1 << (8 * n) }
                stack.append(.int(v))
            case UInt8(ascii: "G"):                                      // BINFLOAT (big-endian)
                var v: UInt64 = 0
                for b in try read(8) { v = v << 8 | UInt64(b) }
                stack.append(.float(Double(bitPattern: v)))
            case UInt8(ascii: "X"): stack.append(.string(String(decoding: try read(try uint(4)), as: UTF8.self)))  // BINUNICODE
            case 0x8C: stack.append(.string(String(decoding: try read(try uint(1)), as: UTF8.self)))             // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(String(decoding: try read(try uint(8)), as: UTF8.self)))             // BINUNICODE8
            case UInt8(ascii: "T"): stack.append(.string(String(decoding: try read(try uint(4)), as: UTF8.self))) // BINSTRING
            case UInt8(ascii: "U"): stack.append(.string(String(decoding: try read(try uint(1)), as: UTF8.self))) // SHORT_BINSTRING
            case UInt8(ascii: "B"): stack.append(.bytes(Array(try read(try uint(4)))))                            // BINBYTES
            case UInt8(ascii: "C"): stack.append(.bytes(Array(try read(try uint(1)))))                            // SHORT_BINBYTES
            case UInt8(ascii: "q"): memo[try uint(1)] = try top()        // BINPUT
            case UInt8(ascii: "r"): memo[try uint(4)] = try top()        // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()                      // MEMOIZE
            case UInt8(ascii: "h"), UInt8(ascii: "j"):                   // BINGET, LONG_BINGET
                let k = try uint(op == UInt8(ascii: "h") ? 1 : 4)
                guard let v = memo[k] else { throw fail("memo key \(k) was never stored") }
                stack.append(v)
            case UInt8(ascii: "t"): let items = try popToMark(); try nest(items); stack.append(.tuple(items))  // TUPLE
            case 0x85: let a = try pop(); try nest([a]); stack.append(.tuple([a]))                       // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); try nest([a, b]); stack.append(.tuple([a, b]))   // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); try nest([a, b, c]); stack.append(.tuple([a, b, c]))  // TUPLE3
            case UInt8(ascii: "l"): let items = try popToMark(); try nest(items); stack.append(.list(items))  // LIST
            case UInt8(ascii: "a"):                                        // APPEND
                let v = try pop()
                try nest([v])
                guard case var .list(l) = try pop() else { throw fail("APPEND to a non-list") }
                l.append(v); stack.append(.list(l))
            case UInt8(ascii: "e"):                                        // APPENDS
                let items = try popToMark()
                try nest(items)
                guard case var .list(l) = try pop() else { throw fail("APPENDS to a non-list") }
                l += items; stack.append(.list(l))
            case UInt8(ascii: "s"):                                        // SETITEM
                let v = try pop(), k = try pop()
                try nest([k, v])
                guard case var .dict(d) = try pop() else { throw fail("SETITEM on a non-dict") }
                d.append((k, v)); stack.append(.dict(d))
            case UInt8(ascii: "u"):                                        // SETITEMS
                let items = try popToMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
                try nest(items)
                guard case var .dict(d) = try pop() else { throw fail("SETITEMS on a non-dict") }
                for j in stride(from: 0, to: items.count, by: 2) { d.append((items[j], items[j + 1])) }
                stack.append(.dict(d))
            case UInt8(ascii: "c"):                                        // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                stack.append(try global(module + "." + name))
            case 0x93:                                                     // STACK_GLOBAL
                guard case let .string(name) = try pop(), case let .string(module) = try pop() else { throw fail("STACK_GLOBAL without strings") }
                stack.append(try global(module + "." + name))
            case UInt8(ascii: "Q"): stack.append(try persistentLoad(try pop()))  // BINPERSID
            case UInt8(ascii: "R"):                                        // REDUCE
                let args = try pop(), fn = try pop()
                stack.append(try call(fn, args))
            case UInt8(ascii: "b"):                                        // BUILD: state on an OrderedDict (_metadata); ignored
                _ = try pop()
                guard case .dict = try top() else { throw fail("BUILD on something other than a dict") }
            default:
                i -= 1
                throw fail("unknown or unsupported opcode 0x\(String(op, radix: 16))")
            }
            // The pickle of a state dict has no reason to nest deeper or grow wider than this.
            if stack.count > 1_000_000 { throw fail("stack grew past a million items") }
        }
    }

    mutating func line() throws -> String {
        var out: [UInt8] = []
        while true {
            let b = try read(1).first!
            if b == 0x0A { break }
            out.append(b)
            if out.count > 256 { throw fail("GLOBAL name longer than 256 bytes") }
        }
        return String(decoding: out, as: UTF8.self)
    }

    func global(_ name: String) throws -> PickleValue {
        guard TorchCheckpoint.allowedGlobals.contains(name) else {
            throw fail("global '\(name)' is not on the allow-list of a state dict; refusing to load")
        }
        return .global(name)
    }

    /// ('storage', storage type, key, location, element count) → a storage in the archive.
    mutating func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case let .tuple(t) = pid, t.count >= 5, case let .string(kind) = t[0], kind == "storage",
              case let .global(typeName) = t[1], case let .string(key) = t[2], case let .int(numel) = t[4] else {
            throw fail("unsupported persistent id (expected ('storage', type, key, location, size))")
        }
        guard let dtype = TorchCheckpoint.storageDType(typeName) else { throw fail("unsupported storage type \(typeName)") }
        let (offset, size) = try resolveStorage(key, dtype)
        let (bytes, overflow) = numel.multipliedReportingOverflow(by: dtype.byteSize)
        guard numel >= 0, !overflow, bytes <= size else {
            throw fail("storage '\(key)' claims \(numel) elements of \(dtype.rawValue) but holds \(size) bytes: truncated")
        }
        return .storage(dtype: dtype, byteOffset: offset, bytes: bytes, key: key)
    }

    func ints(_ v: PickleValue, _ what: String) throws -> [Int] {
        guard case let .tuple(items) = v else { throw fail("\(what) is not a tuple") }
        return try items.map { item in
            guard case let .int(n) = item, n >= 0 else { throw fail("\(what) holds a non-integer or negative value") }
            return n
        }
    }

    mutating func call(_ fn: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case let .global(name) = fn, case let .tuple(a) = args else { throw fail("REDUCE on something not callable") }
        switch name {
        case "collections.OrderedDict":
            return .dict([])
        case "torch._utils._rebuild_parameter":
            guard let first = a.first else { throw fail("_rebuild_parameter without arguments") }
            return first
        case "torch._utils._rebuild_tensor_v2":
            guard a.count >= 4, case let .storage(dtype, byteOffset, bytes, key) = a[0], case let .int(offset) = a[1] else {
                throw fail("_rebuild_tensor_v2 with unexpected arguments")
            }
            let shape = try ints(a[2], "tensor size"), strides = try ints(a[3], "tensor stride")
            guard shape.count == strides.count else { throw fail("size and stride of different ranks") }
            guard offset >= 0 else { throw fail("tensor at negative offset \(offset) in storage '\(key)'") }
            // The furthest element must lie inside the storage; every product and sum checked (the storage holds
            // `bytes`, so anything that overflows an Int overruns it).
            let overrun = fail("tensor of size \(shape) and stride \(strides) at offset \(offset) overruns storage '\(key)'")
            var count = 1, last = offset
            for (n, st) in zip(shape, strides) {
                let c = count.multipliedReportingOverflow(by: n)
                guard !c.overflow else { throw overrun }
                count = c.partialValue
                guard n > 0 else { continue }
                let span = (n - 1).multipliedReportingOverflow(by: st)
                let sum = last.addingReportingOverflow(span.partialValue)
                guard !span.overflow, !sum.overflow else { throw overrun }
                last = sum.partialValue
            }
            if count > 0 {
                let end = (last + 1).multipliedReportingOverflow(by: dtype.byteSize)  // last < Int.max: the sums above are checked
                guard last < Int.max, !end.overflow, end.partialValue <= bytes else { throw overrun }
            }
            guard offset <= bytes / dtype.byteSize else { throw overrun }
            return .tensor(.init(dtype: dtype, shape: shape, strides: strides, byteOffset: byteOffset + offset * dtype.byteSize))
        default:
            throw fail("'\(name)' cannot be called")
        }
    }
}
