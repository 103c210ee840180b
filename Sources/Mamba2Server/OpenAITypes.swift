import Foundation

/// The body of `POST /v1/completions`, as OpenAI's legacy completions API spells it. Fields OpenAI has and
/// this server does not honour (best_of, logit_bias, suffix, …) are refused with a 400, not ignored.
struct CompletionRequest: Decodable, Sendable {
    var model: String?
    var prompt: PromptInput
    var max_tokens: Int?
    var temperature: Float?
    var top_p: Float?
    var top_k: Int?
    var min_p: Float?
    var repetition_penalty: Float?
    var seed: Int64?
    var stop: StopInput?
    var stream: Bool?
    var logprobs: Int?
    var echo: Bool?
    var n: Int?
    var best_of: Int?
    var suffix: String?
    var user: String?
    var stream_options: StreamOptions?
    /// vLLM's and llama.cpp's extension: keep generating past the end-of-text token (benchmarks).
    var ignore_eos: Bool?
}

/// `stream_options`: with `include_usage`, a streamed completion ends with a chunk of no choices and the
/// usage counts, as OpenAI's API sends it.
struct StreamOptions: Decodable, Sendable {
    var include_usage: Bool?
}

/// A prompt: a string, strings, token ids, or lists of token ids.
enum PromptInput: Decodable, Sendable {
    case texts([String])
    case ids([[Int]])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .texts([s]); return }
        if let s = try? c.decode([String].self) { self = .texts(s); return }
        if let ids = try? c.decode([Int].self) { self = .ids([ids]); return }
        if let ids = try? c.decode([[Int]].self) { self = .ids(ids); return }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "prompt must be a string, a list of strings, a list of token ids or a list of such lists")
    }

    var count: Int {
        switch self {
        case let .texts(t): t.count
        case let .ids(i): i.count
        }
    }
}

/// `stop`: one string or several.
enum StopInput: Decodable, Sendable {
    case strings([String])
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .strings([s]); return }
        self = .strings(try c.decode([String].self))
    }
    var strings: [String] { if case let .strings(s) = self { return s }; return [] }
}

/// `POST /tokenize` and `POST /detokenize` (llama.cpp's server spells them so).
struct TokenizeRequest: Decodable, Sendable {
    var content: String
    var add_special: Bool?
}
struct DetokenizeRequest: Decodable, Sendable {
    var tokens: [Int]
}

/// The response of `POST /v1/completions` (and, with `object` "text_completion" chunks, its stream).
struct CompletionResponse: Encodable, Sendable {
    struct Choice: Encodable, Sendable {
        var text: String
        var index: Int
        var logprobs: Logprobs?
        var finish_reason: String?

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(text, forKey: .text)
            try c.encode(index, forKey: .index)
            try c.encode(logprobs, forKey: .logprobs)          // null when not asked for, as OpenAI writes it
            try c.encode(finish_reason, forKey: .finish_reason)
        }
        enum CodingKeys: String, CodingKey { case text, index, logprobs, finish_reason }
    }
    /// The legacy completions API's log-probabilities: per token its text, log-probability, the most likely
    /// alternatives and where its text starts in the choice's text.
    struct Logprobs: Encodable, Sendable {
        var tokens: [String] = []
        var token_logprobs: [Float] = []
        var top_logprobs: [[String: Float]] = []
        var text_offset: [Int] = []
    }
    struct Usage: Encodable, Sendable {
        var prompt_tokens: Int
        var completion_tokens: Int
        var total_tokens: Int
    }
    var id: String
    var object = "text_completion"
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: Usage?
}

/// `GET /v1/models`.
struct ModelList: Encodable, Sendable {
    struct Model: Encodable, Sendable {
        var id: String
        var object = "model"
        var created: Int
        var owned_by = "mamba2-swift"
    }
    var object = "list"
    var data: [Model]
}
