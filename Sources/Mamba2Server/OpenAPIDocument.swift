/// The OpenAPI 3.0 description of the server's routes, served at `GET /openapi.json` with this server's
/// limits written in (the largest `max_tokens`, the body size). It is what schemathesis tests the server
/// against (`scripts/test_server_schema.py`): every response must be one the document allows.
enum OpenAPIDocument {
    /// `vocabSize`: token ids are 0 ..< vocabSize.
    static func json(_ o: ServerOptions, vocabSize: Int) -> String {
        let maxID = vocabSize - 1
        return #"""
        {
          "openapi": "3.0.3",
          "info": {
            "title": "mamba2 serve",
            "version": "1.0.0",
            "description": "An OpenAI-compatible completions server for Mamba-2 models, with continuous batching over fixed-size states and a prefix-state cache. Request bodies are at most \#(ServerOptions.maxBodyBytes) bytes; prompts at most \#(o.maxPromptTokens) tokens."
          },
          "paths": {
            "/v1/completions": {
              "post": {
                "operationId": "createCompletion",
                "summary": "Completes one or more prompts (OpenAI's legacy completions API), streamed as server-sent events or not.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CompletionRequest"}}}},
                "responses": {
                  "200": {
                    "description": "The completion; with stream true, server-sent events of CompletionResponse chunks ending in 'data: [DONE]'.",
                    "content": {
                      "application/json": {"schema": {"$ref": "#/components/schemas/CompletionResponse"}},
                      "text/event-stream": {"schema": {
                        "description": "One server-sent event: its data is a CompletionResponse chunk as JSON, or [DONE] last.",
                        "type": "object", "required": ["data"], "properties": {"data": {"type": "string"}, "event": {"type": "string"}}
                      }}
                    }
                  },
                  "400": {"$ref": "#/components/responses/Error"},
                  "401": {"$ref": "#/components/responses/Error"},
                  "413": {"$ref": "#/components/responses/Error"},
                  "429": {"$ref": "#/components/responses/Error"},
                  "503": {"$ref": "#/components/responses/Error"}
                }
              }
            },
            "/v1/chat/completions": {
              "post": {
                "operationId": "createChatCompletion",
                "summary": "Not available: no supported model ships a chat template. Always 400.",
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                  "400": {"$ref": "#/components/responses/Error"},
                  "401": {"$ref": "#/components/responses/Error"},
                  "413": {"$ref": "#/components/responses/Error"}
                }
              }
            },
            "/v1/models": {
              "get": {
                "operationId": "listModels",
                "responses": {
                  "200": {"description": "The served model.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelList"}}}},
                  "401": {"$ref": "#/components/responses/Error"}
                }
              }
            },
            "/tokenize": {
              "post": {
                "operationId": "tokenize",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["content"],
                  "properties": {"content": {"type": "string"}, "add_special": {"type": "boolean"}}
                }}}},
                "responses": {
                  "200": {"description": "The token ids.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": {"type": "integer"}}}
                  }}}},
                  "400": {"$ref": "#/components/responses/Error"},
                  "413": {"$ref": "#/components/responses/Error"}
                }
              }
            },
            "/detokenize": {
              "post": {
                "operationId": "detokenize",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["tokens"],
                  "properties": {"tokens": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": \#(maxID)}}}
                }}}},
                "responses": {
                  "200": {"description": "The text.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}
                  }}}},
                  "400": {"$ref": "#/components/responses/Error"},
                  "413": {"$ref": "#/components/responses/Error"}
                }
              }
            },
            "/health": {
              "get": {
                "operationId": "health",
                "responses": {"200": {"description": "The server runs.", "content": {"application/json": {"schema": {
                  "type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}
                }}}}}
              }
            },
            "/metrics": {
              "get": {
                "operationId": "metrics",
                "responses": {"200": {"description": "Counters, gauges and histograms in Prometheus's text format.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}}
              }
            },
            "/openapi.json": {
              "get": {
                "operationId": "openapi",
                "responses": {"200": {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}}
              }
            }
          },
          "components": {
            "responses": {
              "Error": {"description": "An error in OpenAI's shape.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
            "schemas": {
              "CompletionRequest": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                  "model": {"type": "string"},
                  "prompt": {"oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "string", "minLength": 1}},
                    {"type": "array", "minItems": 1, "maxItems": \#(o.maxPromptTokens), "items": {"type": "integer", "minimum": 0, "maximum": \#(maxID)}},
                    {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "array", "minItems": 1, "maxItems": \#(o.maxPromptTokens), "items": {"type": "integer", "minimum": 0, "maximum": \#(maxID)}}}
                  ]},
                  "max_tokens": {"type": "integer", "minimum": 0, "maximum": \#(o.maxTokensLimit), "default": 16},
                  "temperature": {"type": "number", "minimum": 0, "default": 1},
                  "top_p": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1, "default": 1},
                  "top_k": {"type": "integer", "minimum": 0, "default": 0},
                  "min_p": {"type": "number", "minimum": 0, "exclusiveMaximum": true, "maximum": 1, "default": 0},
                  "repetition_penalty": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "default": 1},
                  "seed": {"type": "integer", "format": "int64"},
                  "stop": {"oneOf": [{"type": "string"}, {"type": "array", "maxItems": 16, "items": {"type": "string"}}]},
                  "stream": {"type": "boolean", "default": false},
                  "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
                  "logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
                  "echo": {"type": "boolean", "default": false},
                  "ignore_eos": {"type": "boolean", "default": false, "description": "Keep generating past the end-of-text token (for benchmarks)."},
                  "n": {"type": "integer", "minimum": 1, "maximum": 1},
                  "best_of": {"type": "integer", "minimum": 1, "maximum": 1},
                  "user": {"type": "string"}
                }
              },
              "CompletionResponse": {
                "type": "object",
                "required": ["id", "object", "created", "model", "choices"],
                "properties": {
                  "id": {"type": "string"},
                  "object": {"type": "string", "enum": ["text_completion"]},
                  "created": {"type": "integer"},
                  "model": {"type": "string"},
                  "choices": {"type": "array", "items": {"$ref": "#/components/schemas/Choice"}},
                  "usage": {"$ref": "#/components/schemas/Usage"}
                }
              },
              "Choice": {
                "type": "object",
                "required": ["text", "index", "logprobs", "finish_reason"],
                "properties": {
                  "text": {"type": "string"},
                  "index": {"type": "integer", "minimum": 0},
                  "logprobs": {"nullable": true, "type": "object",
                    "required": ["tokens", "token_logprobs", "top_logprobs", "text_offset"],
                    "properties": {
                      "tokens": {"type": "array", "items": {"type": "string"}},
                      "token_logprobs": {"type": "array", "items": {"type": "number"}},
                      "top_logprobs": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}},
                      "text_offset": {"type": "array", "items": {"type": "integer"}}
                    }},
                  "finish_reason": {"nullable": true, "type": "string", "enum": ["stop", "length", null]}
                }
              },
              "Usage": {
                "type": "object",
                "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
                "properties": {
                  "prompt_tokens": {"type": "integer", "minimum": 0},
                  "completion_tokens": {"type": "integer", "minimum": 0},
                  "total_tokens": {"type": "integer", "minimum": 0}
                }
              },
              "ModelList": {
                "type": "object",
                "required": ["object", "data"],
                "properties": {
                  "object": {"type": "string", "enum": ["list"]},
                  "data": {"type": "array", "items": {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
                    "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"}, "owned_by": {"type": "string"}
                  }}}
                }
              },
              "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
                  "message": {"type": "string"},
                  "type": {"type": "string"},
                  "param": {"type": "string", "nullable": true},
                  "code": {"type": "string", "nullable": true}
                }}}
              }
            }
          }
        }
        """#
    }
}
