import Foundation
import Hummingbird
import NIOCore
import Mamba2

/// An error as OpenAI's API writes it: `{"error": {"message", "type", "param", "code"}}` with its status.
struct APIError: HTTPResponseError, Sendable {
    var status: HTTPResponse.Status
    var message: String
    var type: String
    var param: String?
    var code: String?
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error", param: String? = nil,
         code: String? = nil, headers: HTTPFields = [:]) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code; self.headers = headers
    }

    struct Body: Encodable {
        struct Inner: Encodable {
            let message: String, type: String, param: String?, code: String?
            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(message, forKey: .message); try c.encode(type, forKey: .type)
                try c.encode(param, forKey: .param); try c.encode(code, forKey: .code)   // null, as OpenAI writes them
            }
            enum CodingKeys: String, CodingKey { case message, type, param, code }
        }
        let error: Inner
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONEncoder().encode(Body(error: .init(message: message, type: type, param: param, code: code)))
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func badRequest(_ message: String, param: String? = nil) -> APIError { APIError(.badRequest, message, param: param) }
}

/// Every error a route throws leaves as OpenAI's error shape: the router's own (404, 413 for a body over
/// the limit), JSON that does not decode (400, naming the field), the library's invalid arguments (400).
/// Anything else is a 500 that says what it was.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            throw e
        } catch let e as HTTPError {
            let type = e.status.code >= 500 ? "server_error" : "invalid_request_error"
            var message = e.body ?? e.status.reasonPhrase
            if e.status == .contentTooLarge { message = "the request body is larger than the server's limit of \(context.maxUploadSize) bytes" }
            if e.status == .notFound { message = "no route \(request.method) \(request.uri.path)" }
            throw APIError(e.status, message, type: type, headers: e.headers)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "the request body is larger than the server's limit of \(context.maxUploadSize) bytes")
        } catch let e as DecodingError {
            throw APIError.badRequest("invalid JSON body: \(Self.describe(e))")
        } catch let e as Mamba2Error {
            throw APIError.badRequest("\(e)")
        } catch let e as ContinuousBatcher.SubmitError {
            switch e {
            case .queueFull: throw APIError(.tooManyRequests, "\(e)", type: "rate_limit_error", headers: [.retryAfter: "1"])
            case .stopped, .draining: throw APIError(.serviceUnavailable, "\(e)", type: "server_error")
            }
        } catch let e as ContinuousBatcher.StreamError {
            // A response read more slowly than the batcher produced it (the server fell behind, not the client).
            throw APIError(.serviceUnavailable, "\(e); the server is overloaded, try again", type: "server_error", headers: [.retryAfter: "1"])
        } catch {
            throw APIError(.internalServerError, "internal error: \(error)", type: "server_error")
        }
    }

    /// A decoding error in a sentence that names the field.
    static func describe(_ e: DecodingError) -> String {
        func path(_ p: [CodingKey]) -> String { p.isEmpty ? "the body" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
        switch e {
        case let .typeMismatch(_, c): return "\(path(c.codingPath)) has the wrong type: \(c.debugDescription)"
        case let .valueNotFound(_, c): return "\(path(c.codingPath)) is null: \(c.debugDescription)"
        case let .keyNotFound(k, c): return "missing field \(path(c.codingPath + [k]))"
        case let .dataCorrupted(c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}

/// With `--api-key`, requests to /v1/* must carry `Authorization: Bearer KEY` (401 otherwise).
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: String
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path.hasPrefix("/v1/") && request.headers[.authorization] != "Bearer \(key)" {
            throw APIError(.unauthorized, "missing or wrong API key: send the header 'Authorization: Bearer KEY'", code: "invalid_api_key")
        }
        return try await next(request, context)
    }
}
