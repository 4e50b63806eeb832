// Tests of include/llmpool.hpp against the loopback test server.
//
// Built and run by tests/cpp.rs:
//   g++ -std=c++17 -Wall -Wextra -Werror -fsanitize=address,undefined
//       -Iinclude examples/cpp/test.cpp -Ltarget/debug -lllmpool
// with LLMPOOL_TEST_PLAIN_URL, LLMPOOL_TEST_KEY_URL, LLMPOOL_TEST_KEY and
// LLMPOOL_TEST_REFUSED_URL in the environment. Exits 0 when every check holds.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "llmpool.hpp"

namespace {

int checks = 0;

[[noreturn]] void fail(const char* file, int line, const char* cond, const std::string& msg) {
    std::fprintf(stderr, "%s:%d: CHECK failed: %s\n  %s\n", file, line, cond, msg.c_str());
    std::exit(1);
}

#define CHECK(cond, msg)                                 \
    do {                                                 \
        ++checks;                                        \
        if (!(cond)) fail(__FILE__, __LINE__, #cond, (msg)); \
    } while (0)

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

#define CHECK_CONTAINS(hay, needle) \
    CHECK(contains((hay), (needle)), "\"" + std::string(hay) + "\" lacks \"" + std::string(needle) + "\"")

// Runs `f`, which must throw llmpool::Error; returns it.
template <class F>
llmpool::Error expect_error(F&& f, const char* what) {
    try {
        f();
    } catch (const llmpool::Error& e) {
        return e;
    }
    fail(__FILE__, __LINE__, what, "no llmpool::Error was thrown");
}

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        std::fprintf(stderr, "%s is not set (run via `cargo test --test cpp`)\n", name);
        std::exit(2);
    }
    return v;
}

std::string chat_json(const std::string& content, const std::string& extra = "") {
    return R"({"model":"test-model","messages":[{"role":"user","content":")" + content + "\"}]" +
           extra + "}";
}

llmpool::Client make_client(const std::string& url, const std::string& extra = "") {
    return llmpool::Client(R"({"base_url":")" + url + R"(","max_retries":0)" + extra + "}");
}

void test_basics(const std::string& url) {
    CHECK(!llmpool::version().empty(), "version");
    CHECK(llmpool::code_name(LLMPOOL_TIMEOUT) == "LLMPOOL_TIMEOUT", llmpool::code_name(LLMPOOL_TIMEOUT));

    llmpool::Error e = expect_error([] { llmpool::Client c("{not json"); }, "bad options JSON");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
    CHECK(e.status() == 0, std::to_string(e.status()));
    CHECK_CONTAINS(e.what(), "options_json");

    e = expect_error([] { llmpool::Client c(R"({"no_such_option": 1})"); }, "unknown option");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
    CHECK_CONTAINS(e.message(), "no_such_option");

    llmpool::Client c = make_client(url);
    llmpool::Response r = c.chat(chat_json("hi"));
    CHECK(r.ok() && static_cast<bool>(r), r.error());
    CHECK(r.code() == LLMPOOL_OK, llmpool::code_name(r.code()));
    CHECK(r.text() == "Echo: hi", r.text());
    CHECK(r.status() == 200, std::to_string(r.status()));
    CHECK_CONTAINS(r.body(), "chat.completion");
    CHECK_CONTAINS(r.info(), "\"attempts\"");
    CHECK(r.error().empty(), r.error());
    r.throw_if_error();

    r = c.embeddings(R"({"model":"test-model","input":["a","b"]})");
    CHECK_CONTAINS(r.body(), "\"embedding\"");

    r = c.request("GET", "/models");
    CHECK_CONTAINS(r.body(), "test-model");

    std::string m = c.metrics();
    CHECK_CONTAINS(m, "\"requests\"");
    CHECK_CONTAINS(m, "\"latency_ms\"");

    CHECK(c.warm(2) >= 1, "warm opened nothing");
    c.reset_pool();
}

void test_errors(const std::string& url, const std::string& refused_url) {
    llmpool::Client c = make_client(url);

    llmpool::Error e = expect_error([&] { c.chat("{not json"); }, "bad request JSON");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
    CHECK(std::string(e.code_name()) == "LLMPOOL_INVALID_ARGUMENT", e.code_name());

    e = expect_error([&] { c.chat(std::string("{\"a\":1}\0junk", 12)); }, "embedded NUL");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());

    c.request("POST", "/_test/faults", std::string(R"({"type":"status","code":400})"));
    e = expect_error([&] { c.chat(chat_json("x")); }, "400 fault");
    CHECK(e.code() == LLMPOOL_HTTP_STATUS, e.code_name());
    CHECK(e.status() == 400, std::to_string(e.status()));
    CHECK_CONTAINS(e.body(), "injected fault");
    CHECK_CONTAINS(e.what(), "400");

    // std::runtime_error is a base: generic handlers catch it too.
    bool caught = false;
    try {
        c.request("GET", "/no/such/path");
    } catch (const std::runtime_error& re) {
        caught = true;
        CHECK_CONTAINS(re.what(), "404");
    }
    CHECK(caught, "404 did not throw");

    llmpool::Client refused = make_client(refused_url);
    e = expect_error([&] { refused.chat(chat_json("x")); }, "connection refused");
    CHECK(e.code() == LLMPOOL_CONNECT, e.code_name());
}

void test_moves(const std::string& url) {
    llmpool::Client a = make_client(url);
    llmpool::Client b = std::move(a);
    CHECK(b.chat(chat_json("moved")).text() == "Echo: moved", "moved client");
    llmpool::Error e = expect_error([&] { a.chat(chat_json("x")); }, "moved-from client");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
    e = expect_error([&] { (void)a.metrics(); }, "moved-from metrics");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());

    a = std::move(b);
    llmpool::Response r1 = a.chat(chat_json("one"));
    llmpool::Response r2 = std::move(r1);
    CHECK(r1.get() == nullptr && !r1.ok(), "moved-from response");
    CHECK(r1.code() == LLMPOOL_INVALID_ARGUMENT, "empty response code");
    CHECK(r1.text().empty() && r1.body().empty() && r1.info() == "{}", "empty response accessors");
    CHECK(r2.text() == "Echo: one", r2.text());
    r2 = a.chat(chat_json("two"));
    CHECK(r2.text() == "Echo: two", r2.text());
    llmpool_response* raw = r2.release();
    CHECK(raw != nullptr, "release");
    llmpool_response_free(raw);
}

void test_stream(const std::string& url) {
    llmpool::Client c = make_client(url);
    std::string text;
    int events = 0;
    llmpool::Response r = c.chat_stream(chat_json("hello stream world"),
                                        [&](std::string_view delta, std::string_view event) {
                                            text.append(delta);
                                            CHECK(!event.empty(), "empty event");
                                            ++events;
                                            return true;
                                        });
    CHECK(r.ok(), r.error());
    CHECK(text == "Echo: hello stream world", text);
    CHECK(r.text() == text, r.text());
    CHECK(events >= 4, std::to_string(events));
    CHECK_CONTAINS(r.info(), "\"finish_reason\":\"stop\"");

    // A void callback never stops the stream.
    std::string text2;
    r = c.chat_stream(chat_json("void"), [&](std::string_view d, std::string_view) { text2.append(d); });
    CHECK(text2 == "Echo: void", text2);

    // A const lvalue callable works too.
    int const_calls = 0;
    const auto counter = [&const_calls](std::string_view, std::string_view) { ++const_calls; };
    r = c.chat_stream(chat_json("const"), counter);
    CHECK(r.ok() && const_calls >= 3, std::to_string(const_calls));

    // Returning false stops it: no exception, code CANCELLED, partial text.
    int calls = 0;
    r = c.chat_stream(chat_json("a b c d e f"), [&](std::string_view d, std::string_view) {
        ++calls;
        return d.empty();  // stop at the first non-empty delta
    });
    CHECK(r.code() == LLMPOOL_CANCELLED, llmpool::code_name(r.code()));
    CHECK(calls == 2, std::to_string(calls));
    CHECK(r.text() == "Echo: ", r.text());

    // An exception in the callback aborts the stream and comes out of chat_stream.
    bool caught = false;
    try {
        c.chat_stream(chat_json("boom"), [](std::string_view, std::string_view) -> bool {
            throw std::logic_error("boom from the callback");
        });
    } catch (const llmpool::Error& e) {
        fail(__FILE__, __LINE__, "callback exception", std::string("got llmpool::Error ") + e.what());
    } catch (const std::logic_error& e) {
        caught = true;
        CHECK(std::string(e.what()) == "boom from the callback", e.what());
    }
    CHECK(caught, "callback exception not rethrown");
    CHECK(c.chat(chat_json("after")).text() == "Echo: after", "client unusable after a callback exception");

    // A non-2xx answer throws, without calling the callback.
    c.request("POST", "/_test/faults", std::string(R"({"type":"status","code":400})"));
    calls = 0;
    llmpool::Error e = expect_error(
        [&] { c.chat_stream(chat_json("x"), [&](std::string_view, std::string_view) { ++calls; }); },
        "stream 400");
    CHECK(e.code() == LLMPOOL_HTTP_STATUS && e.status() == 400, e.what());
    CHECK(calls == 0, std::to_string(calls));

    // A mid-stream error event throws PROTOCOL.
    e = expect_error(
        [&] {
            c.chat_stream(chat_json("one two three", R"(,"x_test_sse_error":"overloaded")"),
                          [](std::string_view, std::string_view) {});
        },
        "mid-stream error");
    CHECK(e.code() == LLMPOOL_PROTOCOL, e.code_name());
    CHECK_CONTAINS(e.what(), "overloaded");
}

void test_cancel(const std::string& url) {
    llmpool::Client c = make_client(url);
    std::atomic<bool> started{false};
    std::thread canceller([&] {
        while (!started.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        c.cancel();
    });
    auto t0 = std::chrono::steady_clock::now();
    llmpool::Error e = expect_error(
        [&] {
            c.chat_stream(chat_json("w w w w w w w w w w w w", R"(,"x_test_stream_delay_ms":300)"),
                          [&](std::string_view, std::string_view) { started.store(true); });
        },
        "cancelled stream");
    canceller.join();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    CHECK(e.code() == LLMPOOL_CANCELLED, e.code_name());
    CHECK(ms.count() < 2500, std::to_string(ms.count()) + " ms");
}

void test_batch(const std::string& url) {
    llmpool::Client c = make_client(url);
    std::vector<std::string> reqs;
    for (int i = 0; i < 6; ++i) reqs.push_back(chat_json("item " + std::to_string(i)));
    reqs[3] = "{not json";
    const auto caller = std::this_thread::get_id();
    std::size_t last_done = 0, last_total = 0, progress_calls = 0;
    std::vector<llmpool::Response> out =
        c.chat_batch(reqs, 3, [&](std::size_t done, std::size_t total) {
            CHECK(std::this_thread::get_id() == caller, "progress off the calling thread");
            CHECK(done == last_done + 1, std::to_string(done));
            last_done = done;
            last_total = total;
            ++progress_calls;
        });
    CHECK(out.size() == 6, std::to_string(out.size()));
    CHECK(last_done == 6 && last_total == 6 && progress_calls == 6, std::to_string(progress_calls));
    for (int i = 0; i < 6; ++i) {
        if (i == 3) {
            CHECK(out[3].code() == LLMPOOL_INVALID_ARGUMENT, llmpool::code_name(out[3].code()));
            llmpool::Error e = expect_error([&] { out[3].throw_if_error(); }, "batch item error");
            CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
        } else {
            CHECK(out[i].ok(), out[i].error());
            CHECK(out[i].text() == "Echo: item " + std::to_string(i), out[i].text());
        }
    }

    // Without progress, and empty.
    CHECK(c.chat_batch({}).empty(), "empty batch");
    CHECK(c.chat_batch({chat_json("solo")}).at(0).text() == "Echo: solo", "solo batch");

    // A throwing progress callback: the batch finishes, the exception comes out.
    bool caught = false;
    try {
        c.chat_batch({chat_json("p1"), chat_json("p2")}, 0,
                     [](std::size_t, std::size_t) { throw std::runtime_error("progress boom"); });
    } catch (const std::runtime_error& e) {
        caught = true;
        CHECK(std::string(e.what()) == "progress boom", e.what());
    }
    CHECK(caught, "progress exception not rethrown");

    llmpool::Client moved = std::move(c);
    llmpool::Error e = expect_error([&] { c.chat_batch({chat_json("x")}); }, "batch on empty client");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
}

void test_auth(const std::string& key_url, const std::string& key) {
    llmpool::Client c = make_client(key_url);
    llmpool::Error e = expect_error([&] { c.chat(chat_json("x")); }, "no key");
    CHECK(e.code() == LLMPOOL_HTTP_STATUS && e.status() == 401, e.what());
    CHECK_CONTAINS(e.body(), "invalid_api_key");
    c.set_api_key(key);
    CHECK(c.chat(chat_json("key")).text() == "Echo: key", "with key");
    CHECK(!contains(c.metrics(), key), "metrics leak the key");
    c.set_api_key("");
    e = expect_error([&] { c.chat(chat_json("x")); }, "key removed");
    CHECK(e.status() == 401, std::to_string(e.status()));

    std::atomic<int> asked{0};
    c.set_key_provider([&]() -> std::optional<std::string> {
        ++asked;
        return key;
    });
    CHECK(c.chat(chat_json("provided")).text() == "Echo: provided", "key provider");
    CHECK(asked.load() == 1, std::to_string(asked.load()));

    llmpool::Client d = make_client(key_url);
    d.set_key_provider([]() -> std::optional<std::string> { throw std::runtime_error("no key here"); });
    e = expect_error([&] { d.chat(chat_json("x")); }, "throwing key provider");
    CHECK(e.status() == 401, std::to_string(e.status()));
    d.set_key_provider({});
    d.set_key_provider([]() -> std::optional<std::string> { return std::nullopt; });
    e = expect_error([&] { d.chat(chat_json("x")); }, "nullopt key provider");
    CHECK(e.status() == 401, std::to_string(e.status()));
}

void test_threads(const std::string& url) {
    llmpool::Client c = make_client(url, R"(,"max_concurrency":4)");
    std::atomic<int> good{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t) {
        ts.emplace_back([&, t] {
            for (int i = 0; i < 10; ++i) {
                std::string msg = "t" + std::to_string(t) + "-" + std::to_string(i);
                if (c.chat(chat_json(msg)).text() == "Echo: " + msg) ++good;
            }
        });
    }
    for (auto& t : ts) t.join();
    CHECK(good.load() == 40, std::to_string(good.load()));
}

void test_async(const std::string& url) {
    llmpool::Client c = make_client(url, R"(,"max_retries":0)");
    // Future form: 32 calls in flight at once, each with its own answer.
    std::vector<std::future<llmpool::Response>> fs;
    for (int i = 0; i < 32; ++i) fs.push_back(c.chat_future(chat_json("f" + std::to_string(i))));
    for (int i = 0; i < 32; ++i) {
        llmpool::Response r = fs[i].get();
        CHECK(r.text() == "Echo: f" + std::to_string(i), r.text());
        CHECK_CONTAINS(r.info(), "\"call_id\":");
    }
    // A failure throws from get(), as from the blocking call.
    c.request("POST", "/_test/faults", std::string(R"({"type":"status","code":400})"));
    auto bad = c.chat_future(chat_json("bad"));
    bool threw = false;
    try {
        bad.get();
    } catch (const llmpool::Error& e) {
        threw = true;
        CHECK(e.status() == 400, std::to_string(e.status()));
    }
    CHECK(threw, "a 400 did not throw from the future");
    // Callback form, and embeddings/request futures.
    std::promise<std::string> got;
    llmpool::Call call = c.chat_async(chat_json("cb"), [&got](llmpool::Response r) { got.set_value(r.text()); });
    CHECK(call.id() != 0, "call id");
    CHECK(got.get_future().get() == "Echo: cb", "callback form");
    CHECK(c.embeddings_future(R"({"model":"m","input":"x"})").get().ok(), "embeddings_future");
    CHECK(c.request_future("GET", "/models").get().ok(), "request_future");
    // Cancel one slow call; it ends promptly with LLMPOOL_CANCELLED.
    c.request("POST", "/_test/faults", std::string(R"({"type":"delay","ms":3000})"));
    llmpool::Call slow;
    auto fut = c.chat_future(chat_json("slow"), &slow);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto t0 = std::chrono::steady_clock::now();
    slow.cancel();
    threw = false;
    try {
        fut.get();
    } catch (const llmpool::Error& e) {
        threw = e.code() == LLMPOOL_CANCELLED;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    CHECK(threw, "cancelled future did not throw CANCELLED");
    CHECK(ms < 100, std::to_string(ms) + " ms");
    // A stream with chunk callbacks on llmpool's thread.
    std::atomic<int> chunks{0};
    std::promise<std::string> text;
    llmpool::Call s = c.chat_stream_async(
        chat_json("a b c"), [&chunks](std::string_view, std::string_view) { ++chunks; },
        [&text](llmpool::Response r) { text.set_value(r.text()); });
    CHECK(text.get_future().get() == "Echo: a b c", "stream text");
    CHECK(chunks.load() > 2, std::to_string(chunks.load()));
    // Refused submits throw and never call back.
    threw = false;
    try {
        c.chat_async("[not json", [](llmpool::Response) { std::abort(); });
    } catch (const llmpool::Error& e) {
        threw = e.code() == LLMPOOL_INVALID_ARGUMENT;
    }
    CHECK(threw, "bad JSON did not throw at submit");
}

// A loopback listener whose backlog is full: connects to it hang (until
// connect_timeout_ms), so a warm-up submitted to it is still connecting.
struct UnansweredListener {
    int fd = -1;
    std::vector<int> fill;
    int port = 0;
    UnansweredListener() {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(fd >= 0, "socket");
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
        CHECK(listen(fd, 0) == 0, "listen");
        socklen_t len = sizeof a;
        CHECK(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0, "getsockname");
        port = ntohs(a.sin_port);
        for (int i = 0; i < 16; ++i) {
            int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            CHECK(s >= 0, "socket");
            int rc = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
            pollfd p{s, POLLOUT, 0};
            if (rc == 0 || (errno == EINPROGRESS && poll(&p, 1, 200) == 1)) {
                fill.push_back(s);
                continue;
            }
            close(s);  // this connect hangs: the backlog is full
            return;
        }
        fail(__FILE__, __LINE__, "UnansweredListener", "the backlog never filled");
    }
    ~UnansweredListener() {
        for (int s : fill) close(s);
        close(fd);
    }
};

// warm_async / warm_future: the handshakes on llmpool's threads, the count
// in Response::opened(), errors as from warm(), and Call::cancel().
void test_warm_async(const std::string& url, const std::string& refused_url) {
    llmpool::Client ctl = make_client(url);
    {
        llmpool::Client c = make_client(url);
        CHECK(c.warm_future(3).get() == 3, "warm_future on a cold pool");
        CHECK(c.warm_future(2).get() == 0, "warm_future on a warm pool needs nothing");
        CHECK(c.chat(chat_json("warmed")).text() == "Echo: warmed", "a call after warm_future");
    }
    {
        llmpool::Client c = make_client(url);
        const std::thread::id caller = std::this_thread::get_id();
        std::promise<std::pair<std::size_t, bool>> got;
        llmpool::Call call = c.warm_async(2, [&got, caller](llmpool::Response r) {
            got.set_value({r.ok() ? r.opened() : 9999, std::this_thread::get_id() != caller});
        });
        CHECK(call.id() != 0, "warm_async call id");
        auto [opened, off_caller] = got.get_future().get();
        CHECK(opened == 2, std::to_string(opened));
        CHECK(off_caller, "warm_async's done ran on the calling thread");
        CHECK(c.chat(chat_json("x")).text() == "Echo: x", "plain response");
    }
    {
        // 8 at once, each GET /models answered after 1 s: none waits on another.
        ctl.request("POST", "/_test/faults", std::string(R"({"type":"delay","ms":1000,"times":16})"));
        std::vector<llmpool::Client> cs;
        for (int i = 0; i < 8; ++i) cs.push_back(make_client(url));
        auto t0 = std::chrono::steady_clock::now();
        std::vector<std::future<std::size_t>> fs;
        for (auto& c : cs) fs.push_back(c.warm_future(2));
        for (auto& f : fs) CHECK(f.get() == 2, "warm_future to a 1 s server");
        auto wall =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        std::printf("C++ warm_future: 8 x warm(2) to a 1 s server in %lld ms\n", static_cast<long long>(wall));
        CHECK(wall < 3500, std::to_string(wall) + " ms");
    }
    {
        llmpool::Client refused = make_client(refused_url);
        auto f = refused.warm_future(2);
        llmpool::Error e = expect_error([&] { f.get(); }, "warm_future to a dead gateway");
        CHECK(e.code() == LLMPOOL_CONNECT, e.code_name());
        CHECK(std::string(e.what()).size() > std::string("LLMPOOL_CONNECT").size(), e.what());
    }
    {
        UnansweredListener l;
        llmpool::Client c(R"({"base_url":"http://127.0.0.1:)" + std::to_string(l.port) +
                          R"(/v1","max_retries":0,"connect_timeout_ms":5000})");
        llmpool::Call call;
        auto f = c.warm_future(2, &call);
        CHECK(f.wait_for(std::chrono::milliseconds(300)) == std::future_status::timeout, "still connecting");
        auto t0 = std::chrono::steady_clock::now();
        call.cancel();
        llmpool::Error e = expect_error([&] { f.get(); }, "cancelled warm_future");
        auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        std::printf("C++ warm_future cancelled while connecting: LLMPOOL_CANCELLED in %lld ms\n",
                    static_cast<long long>(ms));
        CHECK(e.code() == LLMPOOL_CANCELLED, e.code_name());
        CHECK(ms < 100, std::to_string(ms) + " ms");
    }
}

void test_raw(const std::string& url) {
    llmpool::Client c = make_client(url);
    std::vector<std::uint8_t> body(1u << 20);
    for (std::size_t i = 0; i < body.size(); i++) body[i] = static_cast<std::uint8_t>(i * 7 + 3);
    llmpool::Response r = c.request_raw("POST", "/echo", "application/octet-stream", body);
    CHECK(r.bytes() == body, "echoed bytes differ");
    CHECK(r.header("Content-Type") == std::optional<std::string>("application/octet-stream"),
          r.header("content-type").value_or("(none)"));
    CHECK(r.header("x-body-bytes") == std::optional<std::string>(std::to_string(body.size())),
          "x-body-bytes");
    CHECK(!r.header("x-absent").has_value(), "x-absent found");
    CHECK(!r.header(std::string("content-type\0x", 14)).has_value(), "NUL in a header name");

    const std::string req = R"({"model":"tts-1","input":"hi there","voice":"a"})";
    r = c.request_raw("POST", "/audio/speech", "application/json", req.data(), req.size());
    CHECK(r.header("content-type") == std::optional<std::string>("audio/mpeg"), "audio type");
    std::vector<std::uint8_t> audio = r.bytes();
    CHECK(audio.size() == 8000, std::to_string(audio.size()));
    CHECK(audio[0] == 'I' && audio[1] == 'D' && audio[2] == '3', "no ID3 header");

    llmpool::Error e = expect_error(
        [&] { c.request_raw("POST", "/echo", "text/plain\r\nX: 1", body); }, "CRLF content type");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
}

// request_raw_async / request_raw_future: byte-exact on the async path,
// the body reusable as soon as the submit returns, cancel, refusals.
void test_raw_async(const std::string& url) {
    llmpool::Client c = make_client(url);
    std::vector<std::uint8_t> body(1u << 20);
    for (std::size_t i = 0; i < body.size(); i++) body[i] = static_cast<std::uint8_t>(i * 13 + 5);
    const std::vector<std::uint8_t> want = body;
    // Future form; the buffer is overwritten (then freed) right after submit.
    auto buf = std::make_unique<std::vector<std::uint8_t>>(body);
    auto f = c.request_raw_future("POST", "/echo", "application/octet-stream", *buf);
    std::fill(buf->begin(), buf->end(), std::uint8_t{0x58});
    buf.reset();
    llmpool::Response r = f.get();
    CHECK(r.bytes() == want, "future: echoed bytes differ");
    CHECK(r.header("x-body-bytes") == std::optional<std::string>(std::to_string(want.size())), "x-body-bytes");
    CHECK_CONTAINS(r.info(), "\"call_id\":");
    // Callback form, pointer + length, on a library thread.
    const std::string req = R"({"model":"tts-1","input":"hi there","voice":"a"})";
    std::promise<llmpool::Response> got;
    const auto caller = std::this_thread::get_id();
    std::atomic<bool> other_thread{false};
    llmpool::Call call = c.request_raw_async("POST", "/audio/speech", "application/json", req.data(), req.size(),
                                             [&](llmpool::Response resp) {
                                                 other_thread = std::this_thread::get_id() != caller;
                                                 got.set_value(std::move(resp));
                                             });
    CHECK(call.id() != 0, "call id");
    llmpool::Response speech = got.get_future().get();
    CHECK(speech.ok(), speech.error());
    CHECK(other_thread.load(), "done ran on the submitting thread");
    CHECK(speech.header("content-type") == std::optional<std::string>("audio/mpeg"), "audio type");
    CHECK(speech.bytes().size() == 8000, std::to_string(speech.bytes().size()));
    // 32 at once to a 1 s server.
    c.request("POST", "/_test/faults", std::string(R"({"type":"delay","ms":1000,"times":32})"));
    std::vector<std::future<llmpool::Response>> fs;
    std::vector<std::vector<std::uint8_t>> bodies;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 32; ++i) {
        bodies.emplace_back(static_cast<std::size_t>(100 + i), static_cast<std::uint8_t>(i));
        bodies.back()[0] = 0;
        bodies.back()[1] = 0xff;
        fs.push_back(c.request_raw_future("POST", "/echo", "application/octet-stream", bodies.back()));
    }
    for (int i = 0; i < 32; ++i) CHECK(fs[i].get().bytes() == bodies[i], "echo " + std::to_string(i));
    auto wall =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    std::printf("C++ request_raw_future: 32 calls to a 1 s server in %lld ms\n", static_cast<long long>(wall));
    CHECK(wall < 3500, std::to_string(wall) + " ms");
    // Cancel one slow call alone.
    c.request("POST", "/_test/faults", std::string(R"({"type":"delay","ms":3000})"));
    llmpool::Call slow;
    auto sf = c.request_raw_future("POST", "/echo", "", want.data(), 16, &slow);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(c.request_raw_future("POST", "/echo", "", want.data(), 3).get().bytes() ==
              std::vector<std::uint8_t>(want.begin(), want.begin() + 3),
          "sibling");
    t0 = std::chrono::steady_clock::now();
    slow.cancel();
    bool cancelled = false;
    try {
        sf.get();
    } catch (const llmpool::Error& err) {
        cancelled = err.code() == LLMPOOL_CANCELLED;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    CHECK(cancelled, "cancelled raw future did not throw CANCELLED");
    CHECK(ms < 100, std::to_string(ms) + " ms");
    // Refused at submit: throws, done never runs.
    llmpool::Error e = expect_error(
        [&] { c.request_raw_async("POST", "/echo", "text/plain\r\nX: 1", want, [](llmpool::Response) { std::abort(); }); },
        "CRLF content type (async)");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
    e = expect_error([&] { c.request_raw_future("POST", "echo", "", nullptr, 0); }, "path without /");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
}

}  // namespace

// Makes the server's next answer 200 with `body` (JSON-escaped into a fault).
void serve(llmpool::Client& c, const std::string& body) {
    std::string fault = R"({"type":"status","code":200,"body":")";
    for (char ch : body) {
        if (ch == '"' || ch == '\\') fault += '\\';
        fault += ch;
    }
    fault += "\"}";
    c.request("POST", "/_test/faults", fault);
}

void test_embeddings(const std::string& url) {
    llmpool::Client c = make_client(url);
    // Rows listed as index 1 then 0; "AACAPwAAAEA=" is 1.0f, 2.0f little-endian.
    serve(c, R"({"data":[{"index":1,"embedding":"AACAPwAAAEA="},{"index":0,"embedding":[0.5,-4]}],"model":"m"})");
    llmpool::Response r = c.embeddings(R"({"model":"m","input":["a","b"]})");
    llmpool::Embeddings e = r.embeddings();
    CHECK(e.count() == 2 && e.dim() == 2 && e.size() == 4, std::to_string(e.count()));
    CHECK(e[0][0] == 0.5f && e[0][1] == -4.0f, "row 0");
    CHECK(e.row(1)[0] == 1.0f && e.row(1)[1] == 2.0f, "row 1");
    float sum = 0;
    for (float v : e) sum += v;
    CHECK(sum == -0.5f, std::to_string(sum));
    std::size_t n = 0;
    for (float v : e.row(1)) n += v > 0;
    CHECK(n == 2, "row iteration");
    llmpool::Response moved = std::move(r);
    CHECK(moved.embeddings().data() == e.data(), "decoded once, kept by the response");
    bool threw = false;
    try {
        e.row(2);
    } catch (const std::out_of_range&) {
        threw = true;
    }
    CHECK(threw, "row(2) of 2");

    serve(c, R"({"data":[{"embedding":[1,2]},{"embedding":[3]}]})");
    llmpool::Response ragged = c.embeddings(R"({"model":"m","input":"a"})");
    llmpool::Error err = expect_error([&] { ragged.embeddings(); }, "ragged");
    CHECK(err.code() == LLMPOOL_PROTOCOL, err.code_name());
    CHECK_CONTAINS(err.message(), "ragged rows");

    llmpool::Response chat = c.chat(chat_json("hi"));
    err = expect_error([&] { chat.embeddings(); }, "chat answer");
    CHECK(err.code() == LLMPOOL_INVALID_ARGUMENT, err.code_name());
    CHECK_CONTAINS(err.message(), "not an embeddings answer");
}

void test_log(const std::string& url) {
    llmpool::Client c = make_client(url);
    std::mutex mu;
    std::vector<std::pair<int, std::string>> lines;
    c.set_log_callback(LLMPOOL_LOG_DEBUG, [&](int level, std::string_view line) {
        std::lock_guard<std::mutex> g(mu);
        lines.emplace_back(level, std::string(line));
    });
    CHECK(c.chat(chat_json("logged")).text() == "Echo: logged", "chat with a log callback");
    std::string all;
    bool debug = false;
    {
        std::lock_guard<std::mutex> g(mu);
        for (auto& [level, line] : lines) {
            all += line + "\n";
            debug = debug || level == LLMPOOL_LOG_DEBUG;
        }
    }
    CHECK_CONTAINS(all, "opened to 127.0.0.1");
    CHECK_CONTAINS(all, "answer HTTP 200");
    CHECK(debug, all);
    std::string prom = c.metrics_prometheus();
    CHECK_CONTAINS(prom, "# TYPE llmpool_requests_total counter\n");
    CHECK_CONTAINS(prom, "code=\"LLMPOOL_OK\"} 1\n");

    // A throwing sink loses its lines, not the call; {} turns logging off.
    c.set_log_callback(LLMPOOL_LOG_TRACE, [](int, std::string_view) { throw std::runtime_error("sink"); });
    CHECK(c.chat(chat_json("still")).text() == "Echo: still", "throwing sink");
    c.set_log_callback(LLMPOOL_LOG_INFO, {});
    llmpool::Error e = expect_error([&] { c.set_log_callback(9, [](int, std::string_view) {}); },
                                    "bad min_level");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());
}

// A chat request the test server answers with the stream fixture `name`.
std::string fixture(const std::string& name, const std::string& extra = "") {
    return R"({"model":"test-model","messages":[{"role":"user","content":"go"}],"x_test_fixture":")" + name + "\"" +
           extra + "}";
}

// Typed deltas copied out of the callback (its views die when it returns).
struct SeenDelta {
    llmpool_delta_kind kind;
    std::uint32_t choice, call_index;
    std::string id, name, text;
    bool has_id, has_name;
};

SeenDelta copy(const llmpool::Delta& d) {
    return SeenDelta{d.kind, d.choice, d.call_index, std::string(d.id.value_or("")), std::string(d.name.value_or("")),
                     std::string(d.text), d.id.has_value(), d.name.has_value()};
}

std::string joined(const std::vector<SeenDelta>& ds, llmpool_delta_kind kind) {
    std::string out;
    for (const SeenDelta& d : ds) {
        if (d.kind == kind) out += d.text;
    }
    return out;
}

void test_agents(const std::string& url) {
    llmpool::Client c = make_client(url);
    std::vector<SeenDelta> seen;
    auto keep = [&](const llmpool::Delta& d) { seen.push_back(copy(d)); };

    // A streamed chat tool call: fragments typed and named, then assembled.
    llmpool::Response r = c.stream_deltas(LLMPOOL_API_CHAT, fixture("tool_call"), keep);
    CHECK(r.ok(), r.error());
    CHECK(joined(seen, LLMPOOL_DELTA_TOOL_CALL) == R"({"city": "Paris"})", joined(seen, LLMPOOL_DELTA_TOOL_CALL));
    for (const SeenDelta& d : seen) {
        CHECK(d.kind != LLMPOOL_DELTA_TOOL_CALL || (d.id == "call_1" && d.name == "get_weather"), d.id + d.name);
    }
    std::string done = r.completion().value_or("");
    CHECK_CONTAINS(done, R"("object":"chat.completion")");
    CHECK_CONTAINS(done, R"("finish_reason":"tool_calls")");
    CHECK_CONTAINS(done, R"("arguments":"{\"city\": \"Paris\"}")");

    // Reasoning is typed apart from the answer; ids stay unknown there.
    seen.clear();
    c.stream_deltas(LLMPOOL_API_CHAT, fixture("reasoning"), keep);
    CHECK(!seen.empty() && seen[0].kind == LLMPOOL_DELTA_REASONING && seen[0].text == "Let me " && !seen[0].has_id &&
              !seen[0].has_name,
          seen.empty() ? "none" : seen[0].text);
    CHECK(joined(seen, LLMPOOL_DELTA_CONTENT) == "Answer.", joined(seen, LLMPOOL_DELTA_CONTENT));

    // false stops the stream: CANCELLED with the partial completion.
    r = c.stream_deltas(LLMPOOL_API_CHAT, fixture("tool_call"), [](const llmpool::Delta&) { return false; });
    CHECK(r.code() == LLMPOOL_CANCELLED, llmpool::code_name(r.code()));
    CHECK_CONTAINS(r.completion().value_or(""), R"("name":"get_weather")");
    // An exception from on_delta comes back here.
    bool thrown = false;
    try {
        c.stream_deltas(LLMPOOL_API_CHAT, fixture("tool_call"), [](const llmpool::Delta&) -> bool {
            throw std::runtime_error("from on_delta");
        });
    } catch (const std::runtime_error& e) {
        thrown = std::string(e.what()) == "from on_delta";
    }
    CHECK(thrown, "on_delta's exception was not rethrown");
    llmpool::Error e = expect_error(
        [&] { c.stream_deltas(LLMPOOL_API_CHAT, fixture("error_in_200"), keep); }, "error in a 200 stream");
    CHECK(e.code() == LLMPOOL_PROTOCOL && e.status() == 200, e.code_name());
    e = expect_error([&] { c.stream_deltas(static_cast<llmpool_api>(7), fixture("tool_call"), keep); }, "bad api");
    CHECK(e.code() == LLMPOOL_INVALID_ARGUMENT, e.code_name());

    // The Responses API: blocking, events, typed deltas.
    r = c.responses(R"({"model":"test-model","input":"hello there"})");
    CHECK(r.text() == "Echo: hello there", r.text());
    CHECK_CONTAINS(r.completion().value_or(""), R"("object":"response")");
    const std::string rtool = R"({"model":"test-model","input":"hello there","x_test_tool":true})";
    std::string text;
    r = c.responses_stream(rtool, [&](std::string_view d, std::string_view) { text += d; });
    CHECK(text == "Echo: hello there", text);
    seen.clear();
    r = c.stream_deltas(LLMPOOL_API_RESPONSES, rtool, keep);
    CHECK(joined(seen, LLMPOOL_DELTA_CONTENT) == "Echo: hello there", joined(seen, LLMPOOL_DELTA_CONTENT));
    auto first_tool = std::find_if(seen.begin(), seen.end(),
                                   [](const SeenDelta& d) { return d.kind == LLMPOOL_DELTA_TOOL_CALL; });
    CHECK(first_tool != seen.end() && first_tool->call_index == 1 && first_tool->name == "get_weather", "tool delta");
    CHECK_CONTAINS(r.completion().value_or(""), R"("status":"completed")");

    // The Messages API: tool_use input parsed; overloaded_error throws.
    const std::string msgs = R"({"model":"claude-sonnet-4.5","max_tokens":64,"messages":[{"role":"user","content":"hi"}])";
    r = c.messages(msgs + "}");
    CHECK(r.text() == "Echo: hi", r.text());
    seen.clear();
    r = c.stream_deltas(LLMPOOL_API_MESSAGES, msgs + R"(,"x_test_tool":true})", keep);
    CHECK(joined(seen, LLMPOOL_DELTA_CONTENT) == "Echo: hi", joined(seen, LLMPOOL_DELTA_CONTENT));
    CHECK_CONTAINS(r.completion().value_or(""), R"("input":{"city":"Paris"})");
    CHECK_CONTAINS(r.completion().value_or(""), R"("stop_reason":"tool_use")");
    e = expect_error([&] { c.messages_stream(msgs + R"(,"x_test_overloaded":true})", [](auto, auto) {}); },
                     "overloaded");
    CHECK(e.code() == LLMPOOL_PROTOCOL, e.code_name());
    CHECK_CONTAINS(e.message(), "Overloaded");

    // Plain answers: the completion is the body; embeddings have none.
    r = c.chat(chat_json("hi"));
    CHECK(r.completion() == r.body(), r.body());
    CHECK(!c.embeddings(R"({"model":"m","input":"x"})").completion().has_value(), "embeddings completion");

    // Without blocking: deltas on llmpool's thread, then done with the answer.
    std::mutex mu;
    std::vector<SeenDelta> async_seen;
    std::promise<llmpool::Response> p;
    llmpool::Call call = c.stream_deltas_async(
        LLMPOOL_API_CHAT, fixture("tool_call"),
        [&](const llmpool::Delta& d) {
            std::lock_guard<std::mutex> g(mu);
            async_seen.push_back(copy(d));
        },
        [&](llmpool::Response resp) { p.set_value(std::move(resp)); });
    r = p.get_future().get();
    CHECK(r.ok(), r.error());
    {
        std::lock_guard<std::mutex> g(mu);
        CHECK(joined(async_seen, LLMPOOL_DELTA_TOOL_CALL) == R"({"city": "Paris"})", "async tool deltas");
    }
    CHECK_CONTAINS(r.completion().value_or(""), R"("finish_reason":"tool_calls")");
    r = c.responses_future(R"({"model":"test-model","input":"yo"})").get();
    CHECK(r.text() == "Echo: yo", r.text());
    r = c.messages_future(R"({"model":"m","messages":[{"role":"user","content":"yo"}]})").get();
    CHECK(r.text() == "Echo: yo", r.text());
    std::promise<llmpool::Response> p2;
    std::string events_text;
    llmpool::Call call2 = c.messages_stream_async(
        msgs + "}", [&](std::string_view d, std::string_view) { events_text += d; },
        [&](llmpool::Response resp) { p2.set_value(std::move(resp)); });
    r = p2.get_future().get();
    CHECK(r.ok() && events_text == "Echo: hi", events_text);
}

int main() {
    const std::string url = env("LLMPOOL_TEST_PLAIN_URL");
    test_basics(url);
    test_errors(url, env("LLMPOOL_TEST_REFUSED_URL"));
    test_moves(url);
    test_stream(url);
    test_cancel(url);
    test_batch(url);
    test_auth(env("LLMPOOL_TEST_KEY_URL"), env("LLMPOOL_TEST_KEY"));
    test_threads(url);
    test_async(url);
    test_warm_async(url, env("LLMPOOL_TEST_REFUSED_URL"));
    test_embeddings(url);
    test_raw(url);
    test_raw_async(url);
    test_log(url);
    test_agents(url);
    std::printf("C++ wrapper: %d checks passed\n", checks);
    return 0;
}
