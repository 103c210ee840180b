// The OpenAI-compatible server through Hummingbird's router test client (no sockets): completions against
// the library's own generation, batching against one-at-a-time, streaming, and every error's status and
// shape. The bundled model in float32 on the CPU.
import Foundation
import Hummingbird
import HummingbirdTesting
@testable import Mamba2Server
import Mamba2TestSupport
import Testing

/// A server over its own copy of the bundled model, and a second copy to compute expected outputs.
func makeServer(slots: Int = 8, queueLimit: Int = 64, apiKey: String? = nil, maxPromptTokens: Int = 65536)
    throws -> (CompletionServer, LanguageModel) {
    let path = try #require(LanguageModel.bundledModelPath)
    let served = try LanguageModel.load(directory: path)
    let metrics = ServerMetrics()
    let batcher = try ContinuousBatcher(backend: served.backend, tokenizer: served.tokenizer,
                                        options: .init(slots: slots, prefillTokenBudget: 4096, queueLimit: queueLimit, observer: metrics))
    let server = CompletionServer(batcher: batcher, options: .init(modelName: "english-bytes", apiKey: apiKey, maxTokensLimit: 512,
                                                                   maxPromptTokens: maxPromptTokens), metrics: metrics)
    return (server, try LanguageModel.load(directory: path))
}

func post(_ client: some TestClientProtocol, _ uri: String, _ json: String, headers: HTTPFields = [:]) async throws -> TestResponse {
    var h = headers
    h[.contentType] = "application/json"
    return try await client.execute(uri: uri, method: .post, headers: h, body: ByteBuffer(string: json))
}

func object(_ r: TestResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any], "\(String(buffer: r.body))")
}

/// The greedy tokens `mamba2 generate` would give (TokenGenerator on row 0), with each step's margin
/// between the best and second-best log-probability.
func greedy(_ lm: LanguageModel, _ prompt: String, maxTokens: Int) throws -> (ids: [Int], text: String, margins: [Float]) {
    var p = GenerateParameters(maxTokens: maxTokens, temperature: 0, topLogprobs: 2)
    if let eos = lm.tokenizer?.endOfTextID { p.stopTokenIDs = [eos] }
    var gen = try lm.tokenGenerator(prompt: lm.tokenizer!.encode(prompt), parameters: p)
    var ids: [Int] = [], text = "", margins: [Float] = []
    while let step = try gen.next() {
        ids.append(step.token.id)
        margins.append(step.token.top[0].logprob - step.token.top[1].logprob)
        text += step.text ?? ""
    }
    text += gen.finishText() ?? ""
    return (ids, text, margins)
}

@Suite("Server: completions") struct ServerCompletionTests {
    @Test("a greedy completion equals the library's generation, tokens and text")
    func greedyMatches() async throws {
        let (server, reference) = try makeServer()
        defer { server.batcher.stop() }
        let prompt = "And it came to pass"
        let expected = try greedy(reference, prompt, maxTokens: 40)
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let r = try await post(client, "/v1/completions", #"{"prompt": "\#(prompt)", "max_tokens": 40, "temperature": 0, "logprobs": 1}"#)
            #expect(r.status == .ok, "\(String(buffer: r.body))")
            let o = try object(r)
            let choice = try #require((o["choices"] as? [[String: Any]])?.first)
            #expect(choice["text"] as? String == expected.text)
            let lp = try #require(choice["logprobs"] as? [String: Any])
            #expect((lp["tokens"] as? [String])?.count == expected.ids.count)
            let usage = try #require(o["usage"] as? [String: Int])
            #expect(usage["completion_tokens"] == expected.ids.count)
            #expect(usage["prompt_tokens"] == reference.tokenizer!.encode(prompt).count)
            #expect(choice["finish_reason"] as? String == (expected.ids.count == 40 ? "length" : "stop"))
        }
    }

    @Test("eight concurrent requests give the tokens each gives alone")
    func batchedEqualsAlone() async throws {
        let (server, reference) = try makeServer(slots: 8)
        defer { server.batcher.stop() }
        let prompts = ["And it came to pass", "The quick brown fox", "A hacker is", "To install a package, run",
                       "In the beginning", "Q: What is", "The LORD said unto Moses", "Debian is"]
        let n = 30
        var expected: [[Int]] = []
        for p in prompts {
            let g = try greedy(reference, p, maxTokens: n)
            // The batched step rounds differently from a one-row step (a matrix product against a matrix-vector
            // one, ~1e-6 relative in float32); a choice is only stable where its margin is clearly larger.
            #expect(g.margins.allSatisfy { $0 > 1e-3 }, "prompt \(p): a near tie (margin \(g.margins.min()!)); pick another prompt")
            expected.append(g.ids)
        }
        // Submitted together: they share prefills and decode steps.
        let tokenizer = reference.tokenizer!
        var streams: [AsyncThrowingStream<Generation, Error>] = []
        for p in prompts {
            var params = GenerateParameters(maxTokens: n, temperature: 0)
            params.stopTokenIDs = [tokenizer.endOfTextID!]
            streams.append(try server.batcher.submit(prompt: tokenizer.encode(p), parameters: params))
        }
        let got = try await collectTokens(streams)
        #expect(got == expected)
        let m = server.batcher.metrics
        #expect(m.rowsStepped > m.decodeSteps, "no decode step advanced more than one row: \(m)")
    }

    @Test("a streamed completion: server-sent events whose text is the completion's, ending in [DONE]")
    func streamed() async throws {
        let (server, reference) = try makeServer()
        defer { server.batcher.stop() }
        let expected = try greedy(reference, "A hacker is", maxTokens: 30)
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let r = try await post(client, "/v1/completions", #"{"prompt": "A hacker is", "max_tokens": 30, "temperature": 0, "stream": true}"#)
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "text/event-stream")
            let events = String(buffer: r.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.last == "data: [DONE]")
            var text = "", finish: String?
            for e in events.dropLast() {
                #expect(e.hasPrefix("data: "))
                let o = try #require(try JSONSerialization.jsonObject(with: Data(e.dropFirst(6).utf8)) as? [String: Any])
                let c = try #require((o["choices"] as? [[String: Any]])?.first)
                text += c["text"] as? String ?? ""
                if let f = c["finish_reason"] as? String { finish = f }
            }
            #expect(text == expected.text)
            #expect(finish != nil)
        }
    }

    @Test("a stop string ends the text before it, finish_reason stop")
    func stopString() async throws {
        let (server, reference) = try makeServer()
        defer { server.batcher.stop() }
        let full = try greedy(reference, "And it came to pass", maxTokens: 60).text
        // A word from the middle of the greedy text as the stop string.
        let words = full.split(separator: " ")
        let stop = String(try #require(words.dropFirst(3).first { $0.count >= 3 }))
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let r = try await post(client, "/v1/completions", #"{"prompt": "And it came to pass", "max_tokens": 60, "temperature": 0, "stop": ["\#(stop)"]}"#)
            let c = try #require((try object(r)["choices"] as? [[String: Any]])?.first)
            let text = try #require(c["text"] as? String)
            #expect(full.hasPrefix(text) && !text.contains(stop) && full.dropFirst(text.count).hasPrefix(stop), "\(text) | \(stop)")
            #expect(c["finish_reason"] as? String == "stop")
        }
    }

    @Test("several prompts, token-id prompts and echo")
    func promptsAndEcho() async throws {
        let (server, reference) = try makeServer()
        defer { server.batcher.stop() }
        let tok = reference.tokenizer!
        let a = try greedy(reference, "In the beginning", maxTokens: 12), b = try greedy(reference, "Debian is", maxTokens: 12)
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let r = try await post(client, "/v1/completions", #"{"prompt": ["In the beginning", "Debian is"], "max_tokens": 12, "temperature": 0, "echo": true}"#)
            let choices = try #require(try object(r)["choices"] as? [[String: Any]])
            #expect(choices.map { $0["text"] as? String } == ["In the beginning" + a.text, "Debian is" + b.text])
            #expect(choices.map { $0["index"] as? Int } == [0, 1])
            let ids = tok.encode("Debian is").map(String.init).joined(separator: ",")
            let r2 = try await post(client, "/v1/completions", #"{"prompt": [\#(ids)], "max_tokens": 12, "temperature": 0}"#)
            let c2 = try #require((try object(r2)["choices"] as? [[String: Any]])?.first)
            #expect(c2["text"] as? String == b.text)
        }
    }

    @Test("models, health, tokenize, detokenize, metrics")
    func smallRoutes() async throws {
        let (server, reference) = try makeServer()
        defer { server.batcher.stop() }
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let m = try await client.execute(uri: "/v1/models", method: .get)
            let data = try #require(try object(m)["data"] as? [[String: Any]])
            #expect(data.first?["id"] as? String == "english-bytes")
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
            let t = try await post(client, "/tokenize", #"{"content": "Grüße, world"}"#)
            let ids = try #require(try object(t)["tokens"] as? [Int])
            #expect(ids == reference.tokenizer!.encode("Grüße, world"))
            let d = try await post(client, "/detokenize", #"{"tokens": [\#(ids.map(String.init).joined(separator: ","))]}"#)
            #expect(try object(d)["content"] as? String == "Grüße, world")
            _ = try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 3, "temperature": 0}"#)
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("mamba2_requests_total 1"), "\(metrics)")
            #expect(metrics.contains("# TYPE mamba2_generated_tokens_total counter"))
            // Histograms: one first token, and one decode step for each of the two tokens after it.
            #expect(metrics.contains("# TYPE mamba2_time_to_first_token_seconds histogram"))
            #expect(metrics.contains("mamba2_time_to_first_token_seconds_count 1"), "\(metrics)")
            #expect(metrics.contains("mamba2_time_per_output_token_seconds_count 2"), "\(metrics)")
            #expect(metrics.contains("mamba2_decode_batch_size_count 2"), "\(metrics)")
            // Counters stay monotonic over scrapes.
            _ = try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 3, "temperature": 0}"#)
            let again = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(again.contains("mamba2_requests_total 2") && again.contains("mamba2_generated_tokens_total 6"), "\(again)")
        }
    }

    @Test("GET /openapi.json: the document lists every route and this server's limits")
    func openAPI() async throws {
        let (server, _) = try makeServer()
        defer { server.batcher.stop() }
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let r = try await client.execute(uri: "/openapi.json", method: .get)
            #expect(r.status == .ok)
            let doc = try object(r)
            #expect(doc["openapi"] as? String == "3.0.3")
            let paths = try #require(doc["paths"] as? [String: [String: Any]])
            let routes: [(String, String)] = [("/v1/completions", "post"), ("/v1/chat/completions", "post"), ("/v1/models", "get"),
                                              ("/tokenize", "post"), ("/detokenize", "post"), ("/health", "get"), ("/metrics", "get"),
                                              ("/openapi.json", "get")]
            #expect(Set(paths.keys) == Set(routes.map(\.0)))
            for (path, method) in routes {
                #expect(paths[path]?[method] != nil, "\(method) \(path)")
                // The route is there: not a 404 (other statuses depend on the body).
                let status = try await client.execute(uri: path, method: method == "get" ? .get : .post).status
                #expect(status != .notFound, "\(method) \(path)")
            }
            let schemas = try #require((doc["components"] as? [String: Any])?["schemas"] as? [String: Any])
            let request = try #require(schemas["CompletionRequest"] as? [String: Any])
            let maxTokens = try #require((request["properties"] as? [String: Any])?["max_tokens"] as? [String: Any])
            #expect(maxTokens["maximum"] as? Int == 512)
        }
    }

    @Test("stream_options.include_usage ends the stream with the usage; ignore_eos runs to max_tokens")
    func streamedUsage() async throws {
        let (server, _) = try makeServer()
        defer { server.batcher.stop() }
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let r = try await post(client, "/v1/completions", #"""
                {"prompt": "A hacker is", "max_tokens": 40, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}, "ignore_eos": true}
                """#)
            let events = String(buffer: r.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.last == "data: [DONE]")
            let last = try #require(try JSONSerialization.jsonObject(with: Data(events[events.count - 2].dropFirst(6).utf8)) as? [String: Any])
            #expect((last["choices"] as? [Any])?.isEmpty == true)
            let usage = try #require(last["usage"] as? [String: Int])
            #expect(usage["completion_tokens"] == 40 && usage["total_tokens"] == usage["prompt_tokens"]! + 40, "\(usage)")
        }
    }
}

@Suite("Server: errors") struct ServerErrorTests {
    /// The status and OpenAI's error shape: error.message (non-empty), error.type.
    func expectError(_ r: TestResponse, _ status: HTTPResponse.Status, mentioning word: String) throws {
        #expect(r.status == status, "\(String(buffer: r.body))")
        let e = try #require(try object(r)["error"] as? [String: Any])
        let message = try #require(e["message"] as? String)
        #expect(message.contains(word), "\(message)")
        #expect(e["type"] is String)
    }

    @Test("bad bodies and parameters are 400s that name the field; unknown routes 404; chat 400")
    func badRequests() async throws {
        let (server, _) = try makeServer()
        defer { server.batcher.stop() }
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            try expectError(try await post(client, "/v1/completions", #"{"prompt": "x", "max_tokens": "ten"}"#), .badRequest, mentioning: "max_tokens")
            try expectError(try await post(client, "/v1/completions", #"{"max_tokens": 3}"#), .badRequest, mentioning: "prompt")
            try expectError(try await post(client, "/v1/completions", #"{"prompt": "x""#), .badRequest, mentioning: "JSON")
            try expectError(try await post(client, "/v1/completions", #"{"prompt": "x", "max_tokens": 100000}"#), .badRequest, mentioning: "max_tokens")
            try expectError(try await post(client, "/v1/completions", #"{"prompt": "x", "temperature": -1}"#), .badRequest, mentioning: "temperature")
            try expectError(try await post(client, "/v1/completions", #"{"prompt": "x", "top_p": 0}"#), .badRequest, mentioning: "top_p")
            try expectError(try await post(client, "/v1/completions", #"{"prompt": [1, 99999]}"#), .badRequest, mentioning: "99999")
            try expectError(try await post(client, "/v1/completions", #"{"prompt": ""}"#), .badRequest, mentioning: "empty")
            try expectError(try await post(client, "/v1/completions", #"{"prompt": "x", "n": 2}"#), .badRequest, mentioning: "n must be 1")
            try expectError(try await post(client, "/v1/chat/completions", #"{"messages": []}"#), .badRequest, mentioning: "chat template")
            try expectError(try await client.execute(uri: "/v1/nothing", method: .get), .notFound, mentioning: "/v1/nothing")
            try expectError(try await post(client, "/detokenize", #"{"tokens": [-1]}"#), .badRequest, mentioning: "-1")
        }
    }

    @Test("a prompt over the limit and a body over 2 MiB are 413s")
    func tooLarge() async throws {
        let (server, _) = try makeServer(maxPromptTokens: 10)
        defer { server.batcher.stop() }
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            try expectError(try await post(client, "/v1/completions", #"{"prompt": "more than ten bytes here"}"#), .contentTooLarge, mentioning: "10")
            let big = String(repeating: "a", count: ServerOptions.maxBodyBytes + 10)
            try expectError(try await post(client, "/v1/completions", #"{"prompt": "\#(big)"}"#), .contentTooLarge, mentioning: "limit")
        }
    }

    @Test("with --api-key, /v1 needs the bearer token")
    func apiKey() async throws {
        let (server, _) = try makeServer(apiKey: "s3cret")
        defer { server.batcher.stop() }
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            try expectError(try await client.execute(uri: "/v1/models", method: .get), .unauthorized, mentioning: "API key")
            try expectError(try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer wrong"]), .unauthorized, mentioning: "API key")
            #expect(try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer s3cret"]).status == .ok)
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
        }
    }

    @Test("a full queue is a 429 with Retry-After")
    func queueFull() async throws {
        let (server, reference) = try makeServer(slots: 1, queueLimit: 1)
        defer { server.batcher.stop() }
        // One request runs (long), one waits: the queue of one is full.
        let ids = reference.tokenizer!.encode("And")
        let running = try server.batcher.submit(prompt: ids, parameters: .init(maxTokens: 400, temperature: 0))
        // Wait until the first has left the queue for its slot, then fill the queue.
        for _ in 0..<500 where server.batcher.metrics.running == 0 { try await Task.sleep(for: .milliseconds(10)) }
        let waiting = try server.batcher.submit(prompt: ids, parameters: .init(maxTokens: 400, temperature: 0))
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let r = try await post(client, "/v1/completions", #"{"prompt": "x", "max_tokens": 5}"#)
            try expectError(r, .tooManyRequests, mentioning: "queue")
            #expect(r.headers[.retryAfter] == "1")
        }
        _ = (running, waiting)  // both streams stay alive (and their requests in the batcher) until here
    }

    @Test("while draining for shutdown, new requests get 503")
    func draining() async throws {
        let (server, _) = try makeServer()
        defer { server.batcher.stop() }
        server.batcher.beginDraining()
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in
            let r = try await post(client, "/v1/completions", #"{"prompt": "x", "max_tokens": 5}"#)
            try expectError(r, .serviceUnavailable, mentioning: "shutting down")
        }
    }
}
