// Command example makes one chat call and one streamed chat call through
// the llmpool Go binding, then prints the client's metrics.
//
// The gateway comes from the environment: LLMPOOL_BASE_URL (default
// https://api.holysheep.ai/v1) and LLMPOOL_API_KEY. Against the bundled
// loopback server:
//
//	cargo build --release -p llmpool -p llmpool-testserver
//	bash scripts/install.sh /tmp/llmpool    # headers, libllmpool, llmpool.pc
//	export PKG_CONFIG_PATH=/tmp/llmpool/lib/pkgconfig LD_LIBRARY_PATH=/tmp/llmpool/lib
//	target/release/llmpool-testserver &     # prints LISTENING <url>
//	cd examples/go && LLMPOOL_BASE_URL=<url> go run ./example
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/llmpool/llmpool-go"
)

func main() {
	model := os.Getenv("LLMPOOL_MODEL")
	if model == "" {
		model = "gpt-4.1"
	}
	client, err := llmpool.NewClient(`{"timeout_ms": 30000, "max_retries": 2}`)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer client.Close()

	ctx := context.Background()
	req := fmt.Sprintf(`{"model": %q, "messages": [{"role": "user", "content": "Explain connection pooling in one sentence."}]}`, model)

	resp, err := client.Chat(ctx, req)
	var lerr *llmpool.Error
	if errors.As(err, &lerr) {
		fmt.Fprintf(os.Stderr, "chat failed: %s (HTTP %d): %s\n", lerr.CodeName, lerr.Status, lerr.Message)
		os.Exit(1)
	}
	fmt.Println(resp.Text)

	fmt.Print("stream: ")
	_, err = client.ChatStream(ctx, req, func(delta, event string) bool {
		fmt.Print(delta)
		return true // false stops the stream
	})
	fmt.Println()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stream failed:", err)
		os.Exit(1)
	}

	metrics, err := client.Metrics()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("requests=%v connections_opened=%v\n", metrics["requests"], metrics["connections_opened"])
}
