/// Every error the library throws. Each case names the thing at fault: the argument, the file, the tensor
/// or the config field, so that a user can find it without reading our code.
public enum Mamba2Error: Error, CustomStringConvertible, Equatable {
    /// An argument has the wrong shape. `expected` is written with the paper's letters, e.g. "(b, L, H, P)".
    case shape(argument: String, expected: String, got: [Int])
    /// An argument has a value that cannot work (H not divisible by G, an empty sequence, ...).
    case invalidArgument(String, reason: String)
    /// A config field is missing, malformed, contradicts another, or is a feature we refuse to ignore.
    case config(field: String, reason: String)
    /// A checkpoint file is malformed, truncated, or does not match the config.
    case checkpoint(file: String, tensor: String?, reason: String)
    /// A file could not be read.
    case io(path: String, reason: String)
    /// A JSON document could not be parsed.
    case json(source: String, reason: String)

    public var description: String {
        switch self {
        case let .shape(argument, expected, got):
            return "argument '\(argument)' has shape \(got), expected \(expected)"
        case let .invalidArgument(argument, reason):
            return "argument '\(argument)': \(reason)"
        case let .config(field, reason):
            return "config field '\(field)': \(reason)"
        case let .checkpoint(file, tensor, reason):
            if let tensor { return "checkpoint \(file), tensor '\(tensor)': \(reason)" }
            return "checkpoint \(file): \(reason)"
        case let .io(path, reason):
            return "\(path): \(reason)"
        case let .json(source, reason):
            return "JSON in \(source): \(reason)"
        }
    }
}
