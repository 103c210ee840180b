import ArgumentParser
import Mamba2
import Mamba2Training
import Mamba2CUDA
import Mamba2Diagnostics

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Prints the token ids of text (as Python's tokenizers encodes it).")
    @Option(help: "tokenizer.json") var tokenizer: String
    @Option(help: "Text to encode.") var text: String?
    @Option(help: "A file whose contents to encode.") var textFile: String?
    @Option(help: "A file of one JSON string per line; prints one JSON array of ids per line.") var jsonl: String?
    @Flag(help: "Print a JSON array instead of comma-separated ids.") var json = false
    @Flag(help: "Leave out the post-processor's special tokens.") var noSpecialTokens = false

    func run() throws {
        let tok = try Tokenizer(path: tokenizer)
        let add = !noSpecialTokens
        if let jsonl {
            var out = ""
            for (n, line) in String(decoding: try MappedFile.readText(jsonl), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if line.isEmpty { continue }
                guard let s = try JSON.parse(String(line), source: "\(jsonl) line \(n + 1)").stringValue else {
                    throw ValidationError("\(jsonl) line \(n + 1) is not a JSON string")
                }
                out += "[" + tok.encode(s, addSpecialTokens: add).map(String.init).joined(separator: ",") + "]\n"
            }
            print(out, terminator: "")
            return
        }
        let input: [UInt8]
        switch (text, textFile) {
        case let (t?, nil): input = Array(t.utf8)
        case let (nil, f?): input = try MappedFile.readText(f)
        default: throw ValidationError("give exactly one of --text, --text-file, --jsonl")
        }
        let ids = tok.encode(bytes: input, addSpecialTokens: add)
        print(json ? "[" + ids.map(String.init).joined(separator: ",") + "]" : ids.map(String.init).joined(separator: ","))
    }
}

struct DetokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "detokenize", abstract: "Prints the text of token ids.")
    @Option(help: "tokenizer.json") var tokenizer: String
    @Option(help: "Comma-separated ids.") var ids: String?
    @Option(help: "A file of one JSON array of ids per line; prints one JSON string per line.") var jsonl: String?
    @Flag(help: "Keep special tokens in the text.") var keepSpecialTokens = false

    func run() throws {
        let tok = try Tokenizer(path: tokenizer)
        switch (ids, jsonl) {
        case let (ids?, nil):
            print(tok.decode(try parseIDs(ids, option: "--ids"), skipSpecialTokens: !keepSpecialTokens))
        case let (nil, jsonl?):
            var out = ""
            for (n, line) in String(decoding: try MappedFile.readText(jsonl), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if line.isEmpty { continue }
                guard let items = try JSON.parse(String(line), source: "\(jsonl) line \(n + 1)").arrayValue,
                      case let list = items.compactMap(\.intValue), list.count == items.count else {
                    throw ValidationError("\(jsonl) line \(n + 1) is not a JSON array of integers")
                }
                out += JSON.string(tok.decode(list, skipSpecialTokens: !keepSpecialTokens)).serialized + "\n"
            }
            print(out, terminator: "")
        default: throw ValidationError("give exactly one of --ids, --jsonl")
        }
    }
}
