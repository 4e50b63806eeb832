/*
 * llmpool.hpp: a header-only C++17 RAII wrapper over the llmpool C API
 * (include/llmpool.h). Link with -lllmpool (shared or static, see README).
 *
 *   #include "llmpool.hpp"
 *
 *   llmpool::Client client(R"({"base_url": "https://api.example.com/v1"})");
 *   llmpool::Response r = client.chat(R"({"model": "gpt-4o-mini",
 *       "messages": [{"role": "user", "content": "Hi"}]})");
 *   std::cout << r.text() << "\n";
 *
 * Error handling: exceptions. Every call that fails throws llmpool::Error,
 * which carries the llmpool_code, its name, the HTTP status (0 when no HTTP
 * answer arrived), the raw response body and the error message (what()).
 * The exceptions to that rule, all documented at the function:
 *   - chat_batch() never throws for a failed item: every item gets its own
 *     Response (check ok() / code(), or call throw_if_error());
 *   - chat_stream() returns normally (code() == LLMPOOL_CANCELLED) when the
 *     callback itself asked to stop by returning false.
 * Exceptions never cross the C boundary: an exception thrown by a stream
 * callback, a batch progress callback or a key provider is caught inside
 * the C callback, the C call is stopped (stream) or finished, and the
 * exception is rethrown from the C++ call that started it (a key provider's
 * exception just means "no new key").
 *
 * Thread safety is the C API's: one Client may be shared by many threads
 * (all const and non-const calls except destruction, move and
 * set_key_provider may run concurrently). Client and Response are
 * move-only; a moved-from object is empty (calls on an empty Client throw
 * LLMPOOL_INVALID_ARGUMENT).
 */

#ifndef LLMPOOL_HPP
#define LLMPOOL_HPP

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "llmpool.h"

namespace llmpool {

/// The library version, e.g. "0.1.0".
inline std::string version() { return llmpool_version(); }

/// The name of a result code, e.g. "LLMPOOL_TIMEOUT".
inline std::string code_name(llmpool_code code) {
    return llmpool_code_name(static_cast<int>(code));
}

/// Thrown by every failing call. what() is the error message.
class Error : public std::runtime_error {
public:
    Error(llmpool_code code, std::uint16_t status, std::string body, const std::string& message)
        : std::runtime_error(message.empty() ? std::string(llmpool_code_name(code)) : message),
          code_(code),
          status_(status),
          body_(std::move(body)) {}

    /// The result code (never LLMPOOL_OK).
    llmpool_code code() const noexcept { return code_; }
    /// The code's name, e.g. "LLMPOOL_HTTP_STATUS".
    const char* code_name() const noexcept { return llmpool_code_name(static_cast<int>(code_)); }
    /// The HTTP status of the last answer, 0 when none arrived.
    std::uint16_t status() const noexcept { return status_; }
    /// The raw response body ("" when none).
    const std::string& body() const noexcept { return body_; }
    /// The error message (same as what()).
    std::string message() const { return what(); }

private:
    llmpool_code code_;
    std::uint16_t status_;
    std::string body_;
};

/// The result of one call. Owns an llmpool_response; move-only.
/// A read-only view of an embeddings answer's vectors: a contiguous
/// row-major count() x dim() float matrix, row i being the vector whose
/// `index` is i. Owned by the Response it came from: valid while that
/// Response lives (moving the Response keeps it valid). Span-like:
/// data()/size()/begin()/end() over all floats, row(i) over one vector.
class Embeddings {
public:
    /// One vector: dim() floats.
    class Row {
    public:
        Row(const float* p, std::size_t n) noexcept : p_(p), n_(n) {}
        const float* data() const noexcept { return p_; }
        std::size_t size() const noexcept { return n_; }
        const float* begin() const noexcept { return p_; }
        const float* end() const noexcept { return p_ + n_; }
        float operator[](std::size_t i) const noexcept { return p_[i]; }

    private:
        const float* p_;
        std::size_t n_;
    };

    Embeddings() noexcept = default;
    Embeddings(const float* data, std::size_t count, std::size_t dim) noexcept
        : data_(data), count_(count), dim_(dim) {}
    /// The first float (nullptr when empty).
    const float* data() const noexcept { return data_; }
    /// Number of vectors.
    std::size_t count() const noexcept { return count_; }
    /// Floats per vector.
    std::size_t dim() const noexcept { return dim_; }
    /// count() * dim().
    std::size_t size() const noexcept { return count_ * dim_; }
    bool empty() const noexcept { return size() == 0; }
    const float* begin() const noexcept { return data_; }
    const float* end() const noexcept { return data_ + size(); }
    /// Vector i (no bounds check).
    Row operator[](std::size_t i) const noexcept { return Row(data_ + i * dim_, dim_); }
    /// Vector i; throws std::out_of_range when i >= count().
    Row row(std::size_t i) const {
        if (i >= count_) throw std::out_of_range("llmpool::Embeddings::row: index out of range");
        return (*this)[i];
    }

private:
    const float* data_ = nullptr;
    std::size_t count_ = 0;
    std::size_t dim_ = 0;
};

class Response {
public:
    Response() noexcept = default;
    /// Takes ownership of a response from the C API (may be NULL).
    explicit Response(llmpool_response* r) noexcept : r_(r) {}
    ~Response() { llmpool_response_free(r_); }
    Response(const Response&) = delete;
    Response& operator=(const Response&) = delete;
    Response(Response&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
    Response& operator=(Response&& o) noexcept {
        if (this != &o) {
            llmpool_response_free(r_);
            r_ = std::exchange(o.r_, nullptr);
        }
        return *this;
    }

    /// The result code (LLMPOOL_INVALID_ARGUMENT for an empty Response).
    llmpool_code code() const noexcept { return llmpool_response_code(r_); }
    /// Whether the call succeeded.
    bool ok() const noexcept { return r_ != nullptr && code() == LLMPOOL_OK; }
    explicit operator bool() const noexcept { return ok(); }
    /// HTTP status of the last answer, 0 when none arrived.
    std::uint16_t status() const noexcept { return llmpool_response_status(r_); }
    /// choices[0].message.content of a chat answer (or the streamed text), else "".
    std::string text() const { return llmpool_response_text(r_); }
    /// The raw response body (may contain NUL bytes).
    std::string body() const {
        std::size_t len = 0;
        const char* p = llmpool_response_body(r_, &len);
        return std::string(p, len);
    }
    /// The raw response body as bytes (e.g. audio/mpeg from request_raw()).
    std::vector<std::uint8_t> bytes() const {
        std::size_t len = 0;
        const char* p = llmpool_response_body(r_, &len);
        return std::vector<std::uint8_t>(p, p + len);
    }
    /// The response header `name` (case-insensitive), or std::nullopt when
    /// the answer had none.
    std::optional<std::string> header(const std::string& name) const {
        const char* v = llmpool_response_header(r_, detail_checked_name(name));
        if (v == nullptr) return std::nullopt;
        return std::string(v);
    }
    /// Call details as a JSON object (attempts, latency_ms, usage, ...).
    std::string info() const { return llmpool_response_info(r_); }
    /// The answer as one JSON object in its API's non-streaming shape: a
    /// chat stream's assembled chat.completion (tool calls joined), a
    /// Responses stream's final `response`, a Messages stream's final
    /// `message`, a non-streamed call's body; std::nullopt when there is
    /// none (embeddings, no answer). A failed or stopped stream keeps what
    /// arrived.
    std::optional<std::string> completion() const {
        const char* c = llmpool_response_completion(r_);
        if (c == nullptr) return std::nullopt;
        return std::string(c);
    }
    /// Why the call failed ("" on success).
    std::string error() const { return llmpool_response_error(r_); }
    /// How many connections a warm-up opened (its info's `opened`; 0 for
    /// any other response).
    std::size_t opened() const {
        const std::string i = info();
        const std::string key = "\"opened\":";
        const std::size_t at = i.find(key);
        if (at == std::string::npos) return 0;
        return static_cast<std::size_t>(std::strtoull(i.c_str() + at + key.size(), nullptr, 10));
    }

    /// The vectors of an embeddings answer (float arrays or base64 alike),
    /// decoded on first use and kept in this Response; see Embeddings.
    /// Throws Error: LLMPOOL_PROTOCOL for ragged or malformed vectors,
    /// LLMPOOL_INVALID_ARGUMENT for a response that is not an embeddings answer.
    Embeddings embeddings() const {
        const float* data = nullptr;
        std::size_t count = 0, dim = 0;
        llmpool_code rc = llmpool_response_embeddings(r_, &data, &count, &dim);
        if (rc != LLMPOOL_OK) throw Error(rc, status(), "", llmpool_response_embeddings_error(r_));
        return Embeddings(data, count, dim);
    }

    /// The Error this response describes, for a failed response.
    Error to_error() const { return Error(code(), status(), body(), error()); }
    /// Throws to_error() unless ok().
    void throw_if_error() const {
        if (!ok()) throw to_error();
    }

    /// The C handle, still owned by this object.
    llmpool_response* get() const noexcept { return r_; }
    /// Gives up ownership of the C handle.
    llmpool_response* release() noexcept { return std::exchange(r_, nullptr); }

private:
    /// A name with an embedded NUL matches no header.
    static const char* detail_checked_name(const std::string& name) {
        return name.find('\0') == std::string::npos ? name.c_str() : nullptr;
    }
    llmpool_response* r_ = nullptr;
};

/// One typed delta of a stream (see Client::stream_deltas). The views are
/// valid only while the callback runs: copy what you keep.
struct Delta {
    llmpool_delta_kind kind;
    /// The chat choice (n > 1); 0 for the other APIs.
    std::uint32_t choice;
    /// A tool call's position (chat), output item (Responses) or content
    /// block (Messages); else 0.
    std::uint32_t call_index;
    /// A tool call's id and function name once known.
    std::optional<std::string_view> id;
    std::optional<std::string_view> name;
    /// The text or argument fragment.
    std::string_view text;

    static Delta from_c(const llmpool_delta& d) noexcept {
        Delta out{d.kind, d.choice, d.call_index, std::nullopt, std::nullopt, std::string_view(d.text, d.text_len)};
        if (d.id != nullptr) out.id = std::string_view(d.id);
        if (d.name != nullptr) out.name = std::string_view(d.name);
        return out;
    }
};

namespace detail {

/// Rejects strings with an embedded NUL (the C API would silently truncate them).
inline const std::string& checked(const std::string& s, const char* what) {
    if (s.find('\0') != std::string::npos) {
        throw Error(LLMPOOL_INVALID_ARGUMENT, 0, "", std::string(what) + ": contains a NUL byte");
    }
    return s;
}

inline Response finish(llmpool_code rc, llmpool_response* raw) {
    Response r(raw);
    if (rc != LLMPOOL_OK) {
        if (r.get() == nullptr) throw Error(rc, 0, "", "");
        throw r.to_error();
    }
    return r;
}

/// State shared between chat_stream() and its C callback.
struct StreamState {
    void* fn;                                                  // the user's callable
    bool (*invoke)(void*, std::string_view, std::string_view);  // calls *fn
    std::exception_ptr error;                                  // what the callable threw
    bool stopped = false;                                      // the callable returned false
};

/// State shared between stream_deltas() and its C callback.
struct DeltaState {
    void* fn;                            // the user's callable
    bool (*invoke)(void*, const Delta&);  // calls *fn
    std::exception_ptr error;            // what the callable threw
    bool stopped = false;                // the callable returned false
};

/// Calls `f(d)`, which returns bool (false stops) or void (never stops).
template <class F>
bool call_on_delta(F& f, const Delta& d) {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, const Delta&>>) {
        f(d);
        return true;
    } else {
        return static_cast<bool>(f(d));
    }
}

/// State shared between chat_batch() and its progress callback.
struct ProgressState {
    const std::function<void(std::size_t, std::size_t)>* fn;
    std::exception_ptr error;
};

/// A key provider; owned by the Client, address stable for its lifetime.
struct KeyProvider {
    std::function<std::optional<std::string>()> fn;
};

/// A log sink; owned by the Client, address stable for its lifetime.
struct LogSink {
    std::function<void(int, std::string_view)> fn;
};

/// An async call's callbacks, owned by the call until its done has run.
struct AsyncBase {
    virtual ~AsyncBase() = default;
    virtual void done(Response r) noexcept = 0;
    virtual bool event(std::string_view, std::string_view) noexcept { return true; }
    virtual bool delta(const Delta&) noexcept { return true; }
};

/// A typed-delta stream's callbacks (stream_deltas_async).
template <class Done, class OnDelta>
struct AsyncDeltaFns final : AsyncBase {
    AsyncDeltaFns(Done d, OnDelta f) : done_fn(std::move(d)), delta_fn(std::move(f)) {}
    Done done_fn;
    OnDelta delta_fn;
    void done(Response r) noexcept override {
        try {
            done_fn(std::move(r));
        } catch (...) {
            // As for AsyncFns::done: nowhere to report it.
        }
    }
    bool delta(const Delta& d) noexcept override {
        try {
            return call_on_delta(delta_fn, d);
        } catch (...) {
            return false;  // stops the stream
        }
    }
};

template <class Done, class OnChunk = std::nullptr_t>
struct AsyncFns final : AsyncBase {
    AsyncFns(Done d, OnChunk c) : done_fn(std::move(d)), chunk_fn(std::move(c)) {}
    Done done_fn;
    OnChunk chunk_fn;
    void done(Response r) noexcept override {
        try {
            done_fn(std::move(r));
        } catch (...) {
            // An exception cannot travel back to the submitter from a
            // library thread; the future form reports failures instead.
        }
    }
    bool event(std::string_view delta, std::string_view ev) noexcept override {
        if constexpr (std::is_same_v<OnChunk, std::nullptr_t>) {
            return true;
        } else {
            try {
                if constexpr (std::is_void_v<std::invoke_result_t<OnChunk&, std::string_view, std::string_view>>) {
                    chunk_fn(delta, ev);
                    return true;
                } else {
                    return static_cast<bool>(chunk_fn(delta, ev));
                }
            } catch (...) {
                return false;  // stops the stream
            }
        }
    }
};

extern "C" {

// C-linkage callbacks. None of them lets an exception escape.

static inline int stream_trampoline(void* userdata, const char* delta, size_t delta_len,
                                    const char* event_json, size_t event_len) noexcept {
    auto* st = static_cast<StreamState*>(userdata);
    try {
        if (st->invoke(st->fn, std::string_view(delta, delta_len),
                       std::string_view(event_json, event_len))) {
            return 0;
        }
        st->stopped = true;
    } catch (...) {
        st->error = std::current_exception();
    }
    return 1;  // abort the stream
}

static inline int delta_trampoline(void* userdata, const llmpool_delta* d) noexcept {
    auto* st = static_cast<DeltaState*>(userdata);
    try {
        if (st->invoke(st->fn, Delta::from_c(*d))) return 0;
        st->stopped = true;
    } catch (...) {
        st->error = std::current_exception();
    }
    return 1;  // abort the stream
}

static inline int async_delta_trampoline(void* userdata, const llmpool_delta* d) noexcept {
    return static_cast<AsyncBase*>(userdata)->delta(Delta::from_c(*d)) ? 0 : 1;
}

static inline void progress_trampoline(void* userdata, size_t done, size_t total) noexcept {
    auto* st = static_cast<ProgressState*>(userdata);
    if (st->error) return;  // one failure is enough; the batch finishes anyway
    try {
        (*st->fn)(done, total);
    } catch (...) {
        st->error = std::current_exception();
    }
}

static inline int key_provider_trampoline(void* userdata, char* buf, size_t buf_len) noexcept {
    auto* kp = static_cast<KeyProvider*>(userdata);
    try {
        std::optional<std::string> key = kp->fn();
        if (!key || key->size() + 1 > buf_len) return 1;
        key->copy(buf, key->size());
        buf[key->size()] = '\0';
        return 0;
    } catch (...) {
        return 1;  // "no new key"
    }
}

static inline void log_trampoline(void* userdata, int level, const char* message,
                                   size_t len) noexcept {
    try {
        static_cast<LogSink*>(userdata)->fn(level, std::string_view(message, len));
    } catch (...) {
        // A throwing sink loses that line; the call goes on.
    }
}

static inline void async_done_trampoline(void* userdata, llmpool_response* r) noexcept {
    std::unique_ptr<AsyncBase> fns(static_cast<AsyncBase*>(userdata));
    fns->done(Response(r));
}

static inline int async_event_trampoline(void* userdata, const char* delta, size_t delta_len,
                                         const char* event_json, size_t event_len) noexcept {
    auto* fns = static_cast<AsyncBase*>(userdata);
    return fns->event(std::string_view(delta, delta_len), std::string_view(event_json, event_len)) ? 0 : 1;
}

}  // extern "C"

/// Turns a response into a future's value (ok) or exception (Error).
inline void fulfil(std::promise<Response>& p, Response r) {
    if (r.ok()) {
        p.set_value(std::move(r));
    } else {
        p.set_exception(std::make_exception_ptr(r.to_error()));
    }
}

}  // namespace detail

/// An async call in flight (or finished). Move-only; the destructor frees
/// the handle but does not cancel the call.
class Call {
public:
    Call() noexcept = default;
    explicit Call(llmpool_call* c) noexcept : c_(c) {}
    ~Call() { llmpool_call_free(c_); }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;
    Call(Call&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Call& operator=(Call&& o) noexcept {
        if (this != &o) {
            llmpool_call_free(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    /// The id matching llmpool_response_call_id() of its response (0 when empty).
    std::uint64_t id() const noexcept { return llmpool_call_id(c_); }
    /// Cancels this call alone (within about 100 ms; a no-op once finished).
    void cancel() noexcept {
        if (c_) llmpool_call_cancel(c_);
    }
    llmpool_call* get() const noexcept { return c_; }

private:
    llmpool_call* c_ = nullptr;
};

/// A pooled, thread-safe client for one gateway. Move-only.
class Client {
public:
    /// All defaults, plus LLMPOOL_BASE_URL / LLMPOOL_API_KEY from the environment.
    Client() : Client(nullptr) {}
    /// From a JSON object of options (see README), e.g.
    /// R"({"base_url": "http://127.0.0.1:8080/v1", "max_retries": 2})".
    /// base_url and api_key still come from the environment when absent.
    explicit Client(const std::string& options_json)
        : Client(detail::checked(options_json, "options_json").c_str()) {}
    explicit Client(const char* options_json) {
        char err[512] = {0};
        llmpool_code rc = llmpool_client_new(options_json, &c_, err, sizeof err);
        if (rc != LLMPOOL_OK) throw Error(rc, 0, "", err);
    }
    ~Client() { llmpool_client_free(c_); }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    Client(Client&& o) noexcept
        : c_(std::exchange(o.c_, nullptr)),
          providers_(std::move(o.providers_)),
          log_sinks_(std::move(o.log_sinks_)) {}
    Client& operator=(Client&& o) noexcept {
        if (this != &o) {
            llmpool_client_free(c_);
            c_ = std::exchange(o.c_, nullptr);
            providers_ = std::move(o.providers_);
            log_sinks_ = std::move(o.log_sinks_);
        }
        return *this;
    }

    /// POST /chat/completions with a JSON request; throws Error on failure.
    Response chat(const std::string& request_json) {
        llmpool_response* r = nullptr;
        const std::string& req = detail::checked(request_json, "request_json");
        llmpool_code rc = llmpool_chat(c_, req.c_str(), &r);
        return detail::finish(rc, r);
    }

    /// POST /responses (OpenAI's Responses API); text() is the output text
    /// joined, completion() the `response` object. Throws Error on failure.
    Response responses(const std::string& request_json) {
        llmpool_response* r = nullptr;
        llmpool_code rc = llmpool_responses(c_, detail::checked(request_json, "request_json").c_str(), &r);
        return detail::finish(rc, r);
    }

    /// POST /messages (Anthropic's Messages API); text() is the text blocks
    /// joined, completion() the `message`. Throws Error on failure.
    Response messages(const std::string& request_json) {
        llmpool_response* r = nullptr;
        llmpool_code rc = llmpool_messages(c_, detail::checked(request_json, "request_json").c_str(), &r);
        return detail::finish(rc, r);
    }

    /// POST /embeddings with a JSON request; throws Error on failure.
    Response embeddings(const std::string& request_json) {
        llmpool_response* r = nullptr;
        const std::string& req = detail::checked(request_json, "request_json");
        llmpool_code rc = llmpool_embeddings(c_, req.c_str(), &r);
        return detail::finish(rc, r);
    }

    /// Any method on a path below base_url (e.g. "GET", "/models"), with an
    /// optional JSON object body; throws Error on failure.
    Response request(const std::string& method, const std::string& path,
                     const std::optional<std::string>& body_json = std::nullopt) {
        llmpool_response* r = nullptr;
        detail::checked(method, "method");
        detail::checked(path, "path");
        if (body_json) detail::checked(*body_json, "body_json");
        llmpool_code rc = llmpool_request(c_, method.c_str(), path.c_str(),
                                          body_json ? body_json->c_str() : nullptr, &r);
        return detail::finish(rc, r);
    }

    /// Any method on a path below base_url with any bytes as the body (sent
    /// as is, with Content-Type `content_type`, "" for none), e.g. a
    /// multipart upload; the answer's bytes are in bytes(), its headers in
    /// header(). Throws Error on failure.
    Response request_raw(const std::string& method, const std::string& path,
                         const std::string& content_type, const void* body, std::size_t body_len) {
        llmpool_response* r = nullptr;
        detail::checked(method, "method");
        detail::checked(path, "path");
        detail::checked(content_type, "content_type");
        llmpool_code rc = llmpool_request_raw(
            c_, method.c_str(), path.c_str(), content_type.empty() ? nullptr : content_type.c_str(),
            static_cast<const std::uint8_t*>(body), body_len, &r);
        return detail::finish(rc, r);
    }
    /// request_raw() with the body in a byte vector.
    Response request_raw(const std::string& method, const std::string& path,
                         const std::string& content_type, const std::vector<std::uint8_t>& body) {
        return request_raw(method, path, content_type, body.data(), body.size());
    }

    /// Streams a chat completion. `on_chunk(std::string_view delta,
    /// std::string_view event_json)` runs on this thread for every chunk
    /// (both views valid only during the call); it returns bool (false
    /// stops the stream) or void (never stops).
    ///
    /// Returns the final Response (text() is the whole streamed text, info()
    /// has ttft_ms/chunks/finish_reason/usage). When on_chunk returned false
    /// the Response is returned too, with code() == LLMPOOL_CANCELLED and the
    /// text received so far. When on_chunk throws, the stream is aborted and
    /// the exception is rethrown here. Any other failure throws Error.
    template <class F>
    Response chat_stream(const std::string& request_json, F&& on_chunk) {
        return event_stream(&llmpool_chat_stream, request_json, std::forward<F>(on_chunk));
    }

    /// Streams the Responses API like chat_stream(): `delta` is each
    /// response.output_text.delta's text ("" for other events). Ends at
    /// response.completed / response.incomplete; response.failed and error
    /// events throw Error (LLMPOOL_PROTOCOL).
    template <class F>
    Response responses_stream(const std::string& request_json, F&& on_event) {
        return event_stream(&llmpool_responses_stream, request_json, std::forward<F>(on_event));
    }

    /// Streams the Messages API like chat_stream(): `delta` is each
    /// text_delta's text. An error event (e.g. overloaded_error) throws
    /// Error (LLMPOOL_PROTOCOL).
    template <class F>
    Response messages_stream(const std::string& request_json, F&& on_event) {
        return event_stream(&llmpool_messages_stream, request_json, std::forward<F>(on_event));
    }

    /// Streams `request_json` on `api` (LLMPOOL_API_CHAT, _RESPONSES,
    /// _MESSAGES), calling `on_delta(const llmpool::Delta&)` on this thread
    /// for each typed delta (content, reasoning, refusal, tool-call argument
    /// fragments); it returns bool (false stops) or void. Returns the final
    /// Response (completion() is the assembled answer); when on_delta
    /// returned false, code() == LLMPOOL_CANCELLED with what arrived. An
    /// exception from on_delta aborts the stream and is rethrown here; any
    /// other failure throws Error (its body() and the stream's partial
    /// answer are lost then: use stream_deltas_async to keep them).
    template <class F>
    Response stream_deltas(llmpool_api api, const std::string& request_json, F&& on_delta) {
        using Fn = std::remove_reference_t<F>;
        static_assert(std::is_invocable_v<Fn&, const Delta&>, "on_delta must be callable as (const llmpool::Delta&)");
        detail::DeltaState st{const_cast<void*>(static_cast<const void*>(std::addressof(on_delta))),
                              [](void* fn, const Delta& d) -> bool {
                                  return detail::call_on_delta(*static_cast<Fn*>(fn), d);
                              },
                              nullptr, false};
        const std::string& req = detail::checked(request_json, "request_json");
        llmpool_response* raw = nullptr;
        llmpool_code rc = llmpool_stream_deltas(c_, static_cast<int>(api), req.c_str(), &detail::delta_trampoline,
                                                &st, &raw);
        Response r(raw);
        if (st.error) std::rethrow_exception(st.error);
        if (rc == LLMPOOL_CANCELLED && st.stopped) return r;
        return detail::finish(rc, r.release());
    }

private:
    using StreamFn = llmpool_code (*)(llmpool_client*, const char*, llmpool_stream_cb, void*, llmpool_response**);
    using StreamAsyncFn = llmpool_code (*)(llmpool_client*, const char*, llmpool_stream_cb, llmpool_done_cb, void*,
                                           llmpool_call**);

    /// chat_stream(), responses_stream() and messages_stream(): `start` is
    /// the C function.
    template <class F>
    Response event_stream(StreamFn start, const std::string& request_json, F&& on_chunk) {
        using Fn = std::remove_reference_t<F>;
        static_assert(std::is_invocable_v<Fn&, std::string_view, std::string_view>,
                      "on_chunk must be callable as (std::string_view delta, std::string_view event_json)");
        detail::StreamState st{
            const_cast<void*>(static_cast<const void*>(std::addressof(on_chunk))),
            [](void* fn, std::string_view delta, std::string_view event) -> bool {
                Fn& f = *static_cast<Fn*>(fn);
                if constexpr (std::is_void_v<std::invoke_result_t<Fn&, std::string_view, std::string_view>>) {
                    f(delta, event);
                    return true;
                } else {
                    return static_cast<bool>(f(delta, event));
                }
            },
            nullptr,
            false};
        const std::string& req = detail::checked(request_json, "request_json");
        llmpool_response* raw = nullptr;
        llmpool_code rc = start(c_, req.c_str(), &detail::stream_trampoline, &st, &raw);
        Response r(raw);
        if (st.error) std::rethrow_exception(st.error);
        if (rc == LLMPOOL_CANCELLED && st.stopped) return r;
        return detail::finish(rc, r.release());
    }

    /// chat_stream_async() and its Responses and Messages forms.
    template <class C, class F>
    Call event_stream_async(StreamAsyncFn start, const char* what, const std::string& request_json, C&& on_chunk,
                            F&& done) {
        const std::string& req = detail::checked(request_json, "request_json");
        auto fns = std::make_unique<detail::AsyncFns<std::decay_t<F>, std::decay_t<C>>>(std::forward<F>(done),
                                                                                         std::forward<C>(on_chunk));
        llmpool_call* call = nullptr;
        llmpool_code rc = start(c_, req.c_str(), &detail::async_event_trampoline, &detail::async_done_trampoline,
                                static_cast<detail::AsyncBase*>(fns.get()), &call);
        if (rc != LLMPOOL_OK) throw Error(rc, 0, "", std::string(what) + ": refused before sending");
        fns.release();  // owned by the call now
        return Call(call);
    }

public:

    // -- async calls --------------------------------------------------------
    //
    // Callback form: returns at once; `done(llmpool::Response)` runs exactly
    // once on one of llmpool's threads (success or failure: check ok()).
    // Exceptions thrown by `done` are swallowed. Throws Error only when the
    // submit itself is refused (invalid JSON, closed client): then `done`
    // never runs. Future form (`*_future`): the future's get() returns the
    // Response or throws Error, as the blocking method would; pass `call` to
    // be able to cancel it. The Client must outlive its calls (its
    // destructor cancels and waits for them).

    template <class F>
    Call chat_async(const std::string& request_json, F&& done) {
        const std::string& req = detail::checked(request_json, "request_json");
        return submit(std::forward<F>(done), [&](void* ud, llmpool_call** call) {
            return llmpool_chat_async(c_, req.c_str(), &detail::async_done_trampoline, ud, call);
        });
    }

    template <class F>
    Call responses_async(const std::string& request_json, F&& done) {
        const std::string& req = detail::checked(request_json, "request_json");
        return submit(std::forward<F>(done), [&](void* ud, llmpool_call** call) {
            return llmpool_responses_async(c_, req.c_str(), &detail::async_done_trampoline, ud, call);
        });
    }

    template <class F>
    Call messages_async(const std::string& request_json, F&& done) {
        const std::string& req = detail::checked(request_json, "request_json");
        return submit(std::forward<F>(done), [&](void* ud, llmpool_call** call) {
            return llmpool_messages_async(c_, req.c_str(), &detail::async_done_trampoline, ud, call);
        });
    }

    template <class F>
    Call embeddings_async(const std::string& request_json, F&& done) {
        const std::string& req = detail::checked(request_json, "request_json");
        return submit(std::forward<F>(done), [&](void* ud, llmpool_call** call) {
            return llmpool_embeddings_async(c_, req.c_str(), &detail::async_done_trampoline, ud, call);
        });
    }

    template <class F>
    Call request_async(const std::string& method, const std::string& path,
                       const std::optional<std::string>& body_json, F&& done) {
        detail::checked(method, "method");
        detail::checked(path, "path");
        if (body_json) detail::checked(*body_json, "body_json");
        return submit(std::forward<F>(done), [&](void* ud, llmpool_call** call) {
            return llmpool_request_async(c_, method.c_str(), path.c_str(),
                                         body_json ? body_json->c_str() : nullptr,
                                         &detail::async_done_trampoline, ud, call);
        });
    }

    /// request_raw() without blocking: `body` is copied before this returns
    /// (it may be reused at once). A bad method, path or content type throws
    /// Error (LLMPOOL_INVALID_ARGUMENT) at submit; `done` then never runs.
    template <class F>
    Call request_raw_async(const std::string& method, const std::string& path,
                           const std::string& content_type, const void* body, std::size_t body_len,
                           F&& done) {
        detail::checked(method, "method");
        detail::checked(path, "path");
        detail::checked(content_type, "content_type");
        return submit(std::forward<F>(done), [&](void* ud, llmpool_call** call) {
            return llmpool_request_raw_async(c_, method.c_str(), path.c_str(),
                                             content_type.empty() ? nullptr : content_type.c_str(),
                                             static_cast<const std::uint8_t*>(body), body_len,
                                             &detail::async_done_trampoline, ud, call);
        });
    }
    /// request_raw_async() with the body in a byte vector.
    template <class F>
    Call request_raw_async(const std::string& method, const std::string& path,
                           const std::string& content_type, const std::vector<std::uint8_t>& body,
                           F&& done) {
        return request_raw_async(method, path, content_type, body.data(), body.size(),
                                 std::forward<F>(done));
    }

    /// A stream: `on_chunk(delta, event_json)` runs on llmpool's thread per
    /// chunk (bool false or an exception stops it), then `done` once.
    template <class C, class F>
    Call chat_stream_async(const std::string& request_json, C&& on_chunk, F&& done) {
        return event_stream_async(&llmpool_chat_stream_async, "chat_stream_async", request_json,
                                  std::forward<C>(on_chunk), std::forward<F>(done));
    }

    template <class C, class F>
    Call responses_stream_async(const std::string& request_json, C&& on_event, F&& done) {
        return event_stream_async(&llmpool_responses_stream_async, "responses_stream_async", request_json,
                                  std::forward<C>(on_event), std::forward<F>(done));
    }

    template <class C, class F>
    Call messages_stream_async(const std::string& request_json, C&& on_event, F&& done) {
        return event_stream_async(&llmpool_messages_stream_async, "messages_stream_async", request_json,
                                  std::forward<C>(on_event), std::forward<F>(done));
    }

    /// stream_deltas() without blocking: `on_delta(const llmpool::Delta&)`
    /// runs on llmpool's thread per delta (false or an exception stops the
    /// stream), then `done(Response)` once, also after a failure, with what
    /// arrived (completion()).
    template <class D, class F>
    Call stream_deltas_async(llmpool_api api, const std::string& request_json, D&& on_delta, F&& done) {
        static_assert(std::is_invocable_v<std::decay_t<D>&, const Delta&>,
                      "on_delta must be callable as (const llmpool::Delta&)");
        const std::string& req = detail::checked(request_json, "request_json");
        auto fns = std::make_unique<detail::AsyncDeltaFns<std::decay_t<F>, std::decay_t<D>>>(
            std::forward<F>(done), std::forward<D>(on_delta));
        llmpool_call* call = nullptr;
        llmpool_code rc = llmpool_stream_deltas_async(c_, static_cast<int>(api), req.c_str(),
                                                      &detail::async_delta_trampoline, &detail::async_done_trampoline,
                                                      static_cast<detail::AsyncBase*>(fns.get()), &call);
        if (rc != LLMPOOL_OK) throw Error(rc, 0, "", "stream_deltas_async: refused before sending");
        fns.release();  // owned by the call now
        return Call(call);
    }

    /// warm() without blocking: the handshakes run on llmpool's threads and
    /// `done(Response)` runs once as for chat_async: ok() when at least one
    /// connection opened or none was needed (opened() says how many), else
    /// the first failure's code and error. Call::cancel() ends it
    /// (LLMPOOL_CANCELLED while it connects).
    template <class F>
    Call warm_async(std::size_t n, F&& done) {
        return submit(std::forward<F>(done), [&](void* ud, llmpool_call** call) {
            return llmpool_client_warm_async(c_, n, &detail::async_done_trampoline, ud, call);
        });
    }

    /// warm() as a future: get() returns how many connections opened, or
    /// throws Error (the first failure's code and error) as warm() does.
    std::future<std::size_t> warm_future(std::size_t n, Call* call = nullptr) {
        auto p = std::make_shared<std::promise<std::size_t>>();
        std::future<std::size_t> f = p->get_future();
        Call c = warm_async(n, [p](Response r) {
            if (r.ok()) {
                p->set_value(r.opened());
            } else {
                p->set_exception(std::make_exception_ptr(r.to_error()));
            }
        });
        if (call) *call = std::move(c);
        return f;
    }

    std::future<Response> chat_future(const std::string& request_json, Call* call = nullptr) {
        return future_of([&](auto done) { return chat_async(request_json, std::move(done)); }, call);
    }

    std::future<Response> responses_future(const std::string& request_json, Call* call = nullptr) {
        return future_of([&](auto done) { return responses_async(request_json, std::move(done)); }, call);
    }

    std::future<Response> messages_future(const std::string& request_json, Call* call = nullptr) {
        return future_of([&](auto done) { return messages_async(request_json, std::move(done)); }, call);
    }

    std::future<Response> embeddings_future(const std::string& request_json, Call* call = nullptr) {
        return future_of([&](auto done) { return embeddings_async(request_json, std::move(done)); }, call);
    }

    std::future<Response> request_future(const std::string& method, const std::string& path,
                                         const std::optional<std::string>& body_json = std::nullopt,
                                         Call* call = nullptr) {
        return future_of([&](auto done) { return request_async(method, path, body_json, std::move(done)); },
                         call);
    }

    /// request_raw() as a future (the body is copied before this returns).
    std::future<Response> request_raw_future(const std::string& method, const std::string& path,
                                             const std::string& content_type, const void* body,
                                             std::size_t body_len, Call* call = nullptr) {
        return future_of(
            [&](auto done) {
                return request_raw_async(method, path, content_type, body, body_len, std::move(done));
            },
            call);
    }
    std::future<Response> request_raw_future(const std::string& method, const std::string& path,
                                             const std::string& content_type,
                                             const std::vector<std::uint8_t>& body, Call* call = nullptr) {
        return request_raw_future(method, path, content_type, body.data(), body.size(), call);
    }

    /// Sends every request (JSON objects as for chat()) with at most
    /// `max_concurrency` in flight (0: the client's max_concurrency, else 16)
    /// and returns one Response per request, in request order. Never throws
    /// for a failed item: check each Response's ok()/code(). `progress(done,
    /// total)` (optional) runs on this thread after each finished item; if it
    /// throws, the batch still finishes and the exception is rethrown here.
    std::vector<Response> chat_batch(const std::vector<std::string>& requests_json,
                                     std::size_t max_concurrency = 0,
                                     const std::function<void(std::size_t, std::size_t)>& progress = {}) {
        if (c_ == nullptr) throw Error(LLMPOOL_INVALID_ARGUMENT, 0, "", "chat_batch: empty client");
        std::vector<const char*> ptrs;
        ptrs.reserve(requests_json.size());
        for (const std::string& s : requests_json) ptrs.push_back(detail::checked(s, "requests_json").c_str());
        std::vector<llmpool_response*> raw(ptrs.size(), nullptr);
        detail::ProgressState st{&progress, nullptr};
        // The code is the first failed item's; every item carries its own.
        (void)llmpool_chat_batch(c_, ptrs.data(), ptrs.size(), max_concurrency,
                                 progress ? &detail::progress_trampoline : nullptr, &st, raw.data());
        std::vector<Response> out;
        out.reserve(raw.size());
        for (llmpool_response* r : raw) out.emplace_back(r);
        if (st.error) std::rethrow_exception(st.error);
        return out;
    }

    /// The client's metrics as a JSON object (requests, errors, latency_ms, ...).
    std::string metrics() const {
        char* m = llmpool_client_metrics(c_);
        if (m == nullptr) throw Error(LLMPOOL_INVALID_ARGUMENT, 0, "", "metrics: empty client");
        std::string s(m);
        llmpool_string_free(m);
        return s;
    }

    /// The client's metrics in the Prometheus text exposition format 0.0.4
    /// (serve it on /metrics); see README "Logs, Prometheus metrics and timings".
    std::string metrics_prometheus() const {
        char* m = llmpool_client_metrics_prometheus(c_);
        if (m == nullptr) throw Error(LLMPOOL_INVALID_ARGUMENT, 0, "", "metrics_prometheus: empty client");
        std::string s(m);
        llmpool_string_free(m);
        return s;
    }

    /// Sends every log line at min_level (LLMPOOL_LOG_ERROR = 1 ..
    /// LLMPOOL_LOG_TRACE = 5) and more severe to fn(level, line). fn MAY RUN
    /// ON ANY THREAD, several at once (every thread that makes a call, and
    /// whichever thread drops a pooled connection): make it thread-safe and
    /// quick. `line` is valid only during the call. An exception thrown by
    /// fn loses that line, nothing else. An empty std::function turns
    /// logging off (also the LLMPOOL_LOG stderr fallback). Must not run
    /// concurrently with other calls on this Client.
    void set_log_callback(int min_level, std::function<void(int level, std::string_view line)> fn) {
        if (!fn) {
            check(llmpool_client_set_log_callback(c_, min_level, nullptr, nullptr), "set_log_callback");
            return;
        }
        auto sink = std::make_unique<detail::LogSink>(detail::LogSink{std::move(fn)});
        check(llmpool_client_set_log_callback(c_, min_level, &detail::log_trampoline, sink.get()),
              "set_log_callback");
        // Old sinks stay alive until the client is freed: another thread
        // may still be inside one.
        log_sinks_.push_back(std::move(sink));
    }

    /// Replaces the API key for every later request ("" removes it).
    void set_api_key(const std::string& api_key) {
        check(llmpool_client_set_api_key(c_, detail::checked(api_key, "api_key").c_str()), "set_api_key");
    }

    /// Installs a key provider, called (from any thread, possibly
    /// concurrently) when a call gets HTTP 401; return the new key, or
    /// std::nullopt for "no new key". An empty std::function removes it.
    /// Must not run concurrently with other calls on this Client.
    void set_key_provider(std::function<std::optional<std::string>()> provider) {
        if (!provider) {
            check(llmpool_client_set_key_provider(c_, nullptr, nullptr), "set_key_provider");
            return;
        }
        auto kp = std::make_unique<detail::KeyProvider>(detail::KeyProvider{std::move(provider)});
        check(llmpool_client_set_key_provider(c_, &detail::key_provider_trampoline, kp.get()),
              "set_key_provider");
        // Old providers stay alive until the client is freed: a call may
        // still be inside one.
        providers_.push_back(std::move(kp));
    }

    /// Cancels every call of this client in flight now (from any thread);
    /// they throw Error with LLMPOOL_CANCELLED.
    void cancel() { check(llmpool_client_cancel(c_), "cancel"); }

    /// Drops every idle pooled connection.
    void reset_pool() { check(llmpool_client_reset_pool(c_), "reset_pool"); }

    /// Opens up to n connections ahead of the first call; returns how many
    /// opened. Blocks this thread for the handshakes (see warm_async).
    std::size_t warm(std::size_t n) {
        std::size_t opened = 0;
        check(llmpool_client_warm(c_, n, &opened), "warm");
        return opened;
    }

    /// The C handle, still owned by this object (nullptr when moved from).
    llmpool_client* get() const noexcept { return c_; }

private:
    template <class F, class Submit>
    Call submit(F&& done, Submit&& s) {
        auto fns = std::make_unique<detail::AsyncFns<std::decay_t<F>>>(std::forward<F>(done), nullptr);
        llmpool_call* call = nullptr;
        llmpool_code rc = s(static_cast<detail::AsyncBase*>(fns.get()), &call);
        if (rc != LLMPOOL_OK) throw Error(rc, 0, "", "async submit refused before sending");
        fns.release();  // owned by the call now: freed after its done
        return Call(call);
    }

    template <class Start>
    static std::future<Response> future_of(Start&& start, Call* call) {
        auto p = std::make_shared<std::promise<Response>>();
        std::future<Response> f = p->get_future();
        Call c = start([p](Response r) { detail::fulfil(*p, std::move(r)); });
        if (call) *call = std::move(c);
        return f;
    }

    static void check(llmpool_code rc, const char* what) {
        if (rc != LLMPOOL_OK) {
            throw Error(rc, 0, "", std::string(what) + ": " + llmpool_code_name(static_cast<int>(rc)));
        }
    }

    llmpool_client* c_ = nullptr;
    std::vector<std::unique_ptr<detail::KeyProvider>> providers_;
    std::vector<std::unique_ptr<detail::LogSink>> log_sinks_;
};

}  // namespace llmpool

#endif  // LLMPOOL_HPP
