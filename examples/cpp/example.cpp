// A C++17 tour of include/llmpool.hpp: chat, streaming with a lambda,
// batch, embeddings, metrics and error handling.
//
//   cargo build --release --lib
//   g++ -std=c++17 -Wall -Wextra -Werror -Iinclude examples/cpp/example.cpp
//       -Ltarget/release -lllmpool -Wl,-rpath,"$PWD/target/release" -o example
//   LLMPOOL_BASE_URL=https://api.example.com/v1 LLMPOOL_API_KEY=sk-... ./example
//
// (base_url and api_key come from LLMPOOL_BASE_URL / LLMPOOL_API_KEY because
// the options below do not set them.) LLMPOOL_MODEL picks the model.

#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "llmpool.hpp"

static std::string request(const std::string& model, const std::string& prompt) {
    return R"({"model":")" + model + R"(","messages":[{"role":"user","content":")" + prompt + "\"}]}";
}

int main() {
    const char* m = std::getenv("LLMPOOL_MODEL");
    const std::string model = m && *m ? m : "gpt-4o-mini";
    try {
        llmpool::Client client(R"({"max_retries": 2, "timeout_ms": 60000})");

        // One call.
        llmpool::Response r = client.chat(request(model, "Say hello in five words."));
        std::cout << "chat: " << r.text() << "\n  info: " << r.info() << "\n";

        // Streaming: the lambda gets each delta as it arrives; return false to stop.
        std::cout << "stream: ";
        llmpool::Response s = client.chat_stream(request(model, "Count to five."),
                                                  [](std::string_view delta, std::string_view /*event*/) {
                                                      std::cout << delta << std::flush;
                                                      return true;
                                                  });
        std::cout << "\n  info: " << s.info() << "\n";

        // Batch: one Response per request, in order; items fail independently.
        std::vector<std::string> reqs = {request(model, "One."), request(model, "Two."),
                                         request(model, "Three.")};
        for (const llmpool::Response& item : client.chat_batch(reqs, 2)) {
            if (item.ok()) {
                std::cout << "batch: " << item.text() << "\n";
            } else {
                std::cout << "batch item failed: " << item.error() << "\n";
            }
        }

        // Embeddings: the raw JSON body.
        llmpool::Response e =
            client.embeddings(R"({"model":"text-embedding-3-small","input":"hello"})");
        std::cout << "embeddings: " << e.body().size() << " bytes of JSON\n";

        std::cout << "metrics: " << client.metrics() << "\n";
    } catch (const llmpool::Error& e) {
        std::cerr << "llmpool error " << e.code_name() << " (HTTP " << e.status()
                  << "): " << e.what() << "\n";
        if (!e.body().empty()) std::cerr << "body: " << e.body() << "\n";
        return 1;
    }
    return 0;
}
