package llmpool_test

// Tests against the bundled loopback server (llmpool-testserver). TestMain
// starts it from $LLMPOOL_TESTSERVER, else from
// ../../target/debug/llmpool-testserver (build it with
// `cargo build -p llmpool-testserver`), and kills it at the end.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmpool/llmpool-go"
)

const testKey = "sk-test-go-7734"

var (
	plainURL string // base URL of a server without a key
	keyedURL string // base URL of a server wanting testKey
)

// server is a running llmpool-testserver.
type server struct {
	cmd *exec.Cmd
	url string
}

func startServer(bin string, args ...string) (*server, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		_, _ = r.WriteTo(discard{}) // keep the pipe drained
	}()
	select {
	case line := <-lines:
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "LISTENING ") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("%s printed %q", bin, line)
		}
		return &server{cmd: cmd, url: strings.TrimPrefix(line, "LISTENING ")}, nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s printed nothing in 30 s", bin)
	}
}

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestMain(m *testing.M) {
	bin := os.Getenv("LLMPOOL_TESTSERVER")
	if bin == "" {
		bin = filepath.Join("..", "..", "target", "debug", "llmpool-testserver")
	}
	plain, err := startServer(bin, "--port", "0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot start the test server (build it with `cargo build -p llmpool-testserver` or set LLMPOOL_TESTSERVER): %v\n", err)
		os.Exit(2)
	}
	keyed, err := startServer(bin, "--port", "0", "--require-key", testKey)
	if err != nil {
		plain.stop()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	plainURL, keyedURL = plain.url, keyed.url
	code := m.Run()
	plain.stop()
	keyed.stop()
	os.Exit(code)
}

func options(base string, extra string) string {
	o := fmt.Sprintf(`{"base_url":%q`, base)
	if extra != "" {
		o += "," + extra
	}
	return o + "}"
}

func newClient(t *testing.T, extra string) *llmpool.Client {
	t.Helper()
	c, err := llmpool.NewClient(options(plainURL, extra))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func chatReq(msg string) string {
	b, _ := json.Marshal(map[string]any{
		"model":    "gpt-4.1",
		"messages": []map[string]string{{"role": "user", "content": msg}},
	})
	return string(b)
}

// pushFaults queues faults on the plain server (they apply to the next
// API requests, in order).
func pushFaults(t *testing.T, faults string) {
	t.Helper()
	resp, err := http.Post(plainURL+"/_test/faults", "application/json", strings.NewReader(faults))
	if err != nil {
		t.Fatalf("push faults: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("push faults: HTTP %d", resp.StatusCode)
	}
}

func asError(t *testing.T, err error) *llmpool.Error {
	t.Helper()
	var le *llmpool.Error
	if !errors.As(err, &le) {
		t.Fatalf("want *llmpool.Error, got %T: %v", err, err)
	}
	return le
}

func TestVersionAndCodeNames(t *testing.T) {
	if llmpool.Version() == "" {
		t.Fatal("empty version")
	}
	if got := llmpool.CodeName(llmpool.CodeTimeout); got != "LLMPOOL_TIMEOUT" {
		t.Fatalf("CodeName(CodeTimeout) = %q", got)
	}
	if got := llmpool.CodeName(12345); got != "LLMPOOL_UNKNOWN" {
		t.Fatalf("CodeName(12345) = %q", got)
	}
}

func TestNewClientRejectsBadOptions(t *testing.T) {
	_, err := llmpool.NewClient(`{"no_such_option":1}`)
	e := asError(t, err)
	if e.Code != llmpool.CodeInvalidArgument || e.CodeName != "LLMPOOL_INVALID_ARGUMENT" {
		t.Fatalf("code %d %s", e.Code, e.CodeName)
	}
	if !strings.Contains(e.Message, "no_such_option") {
		t.Fatalf("message does not name the key: %q", e.Message)
	}
	if _, err := llmpool.NewClient(`not json`); err == nil {
		t.Fatal("invalid JSON accepted")
	}
}

func TestChat(t *testing.T) {
	c := newClient(t, "")
	r, err := c.Chat(context.Background(), chatReq("hello from Go"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	if r.Code != llmpool.CodeOK || r.Status != 200 || r.ErrorText != "" {
		t.Fatalf("code %d status %d error %q", r.Code, r.Status, r.ErrorText)
	}
	if r.Text != "Echo: hello from Go" {
		t.Fatalf("text %q", r.Text)
	}
	var body struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	if err := r.JSON(&body); err != nil || len(body.Choices) != 1 || body.Choices[0].Message.Content != r.Text {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	var info map[string]any
	if err := json.Unmarshal(r.Info, &info); err != nil {
		t.Fatalf("info %q: %v", r.Info, err)
	}
	if info["attempts"] != float64(1) {
		t.Fatalf("info.attempts = %v in %s", info["attempts"], r.Info)
	}
	// A nil context is allowed too (documented).
	if _, err := c.Chat(nil, chatReq("x")); err != nil {
		t.Fatalf("Chat(nil ctx): %v", err)
	}
}

func TestLogFuncLoggerAndPrometheus(t *testing.T) {
	c := newClient(t, "")
	var mu sync.Mutex
	var lines []string
	levels := map[llmpool.LogLevel]bool{}
	if err := c.SetLogFunc(llmpool.LogDebug, func(lv llmpool.LogLevel, line string) {
		mu.Lock()
		defer mu.Unlock()
		levels[lv] = true
		lines = append(lines, line)
	}); err != nil {
		t.Fatalf("SetLogFunc: %v", err)
	}
	if _, err := c.Chat(context.Background(), chatReq("logged")); err != nil {
		t.Fatalf("Chat: %v", err)
	}
	mu.Lock()
	all := strings.Join(lines, "\n")
	debug := levels[llmpool.LogDebug]
	mu.Unlock()
	if !strings.Contains(all, "opened to 127.0.0.1") || !strings.Contains(all, "answer HTTP 200") || !debug {
		t.Fatalf("log lines:\n%s", all)
	}

	var buf strings.Builder
	var bmu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { bmu.Lock(); defer bmu.Unlock(); return buf.Write(p) })
	if err := c.SetLogger(log.New(w, "", 0), llmpool.LogInfo); err != nil {
		t.Fatalf("SetLogger: %v", err)
	}
	if _, err := c.Chat(context.Background(), chatReq("std log")); err != nil {
		t.Fatalf("Chat: %v", err)
	}
	bmu.Lock()
	got := buf.String()
	bmu.Unlock()
	if !strings.Contains(got, "llmpool INFO call=") || strings.Contains(got, "DEBUG") {
		t.Fatalf("std log output:\n%s", got)
	}
	if err := c.SetLogFunc(llmpool.LogTrace, func(llmpool.LogLevel, string) { panic("sink") }); err != nil {
		t.Fatalf("SetLogFunc: %v", err)
	}
	if _, err := c.Chat(context.Background(), chatReq("still")); err != nil {
		t.Fatalf("Chat with a panicking log func: %v", err)
	}
	if err := c.SetLogFunc(9, func(llmpool.LogLevel, string) {}); err == nil {
		t.Fatal("level 9 accepted")
	}
	if err := c.SetLogFunc(llmpool.LogInfo, nil); err != nil {
		t.Fatalf("SetLogFunc(nil): %v", err)
	}
	prom, err := c.MetricsPrometheus()
	if err != nil || !strings.Contains(prom, "# TYPE llmpool_requests_total counter\n") ||
		!strings.Contains(prom, `code="LLMPOOL_OK"} 3`) {
		t.Fatalf("MetricsPrometheus: %v\n%s", err, prom)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestEmbeddings(t *testing.T) {
	c := newClient(t, "")
	r, err := c.Embeddings(context.Background(), `{"model":"text-embedding-3-small","input":["a","b"]}`)
	if err != nil {
		t.Fatalf("Embeddings: %v", err)
	}
	var body struct {
		Data []struct{ Embedding []float64 }
	}
	if err := r.JSON(&body); err != nil {
		t.Fatal(err)
	}
	if len(body.Data) != 2 || len(body.Data[0].Embedding) == 0 {
		t.Fatalf("body %q", r.Body)
	}
}

func TestRequestModels(t *testing.T) {
	c := newClient(t, "")
	r, err := c.Request(context.Background(), "GET", "/models", "")
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if r.Status != 200 || !strings.Contains(r.Body, `"data"`) {
		t.Fatalf("status %d body %q", r.Status, r.Body)
	}
	_, err = c.Request(context.Background(), "GET", "no-slash", "")
	if e := asError(t, err); e.Code != llmpool.CodeInvalidArgument {
		t.Fatalf("bad path: %v", err)
	}
}

func TestHTTP400IsAnErrorWithStatusAndBody(t *testing.T) {
	c := newClient(t, `"max_retries":0`)
	pushFaults(t, `[{"type":"status","code":400}]`)
	r, err := c.Chat(context.Background(), chatReq("bad"))
	e := asError(t, err)
	if e.Code != llmpool.CodeHTTPStatus || e.CodeName != "LLMPOOL_HTTP_STATUS" || e.Status != 400 {
		t.Fatalf("got %+v", e)
	}
	var body struct {
		Error struct{ Message string }
	}
	if jerr := json.Unmarshal([]byte(e.Body), &body); jerr != nil || body.Error.Message == "" {
		t.Fatalf("body %q is not an error object: %v", e.Body, jerr)
	}
	if e.Message == "" || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("message %q / Error() %q", e.Message, err.Error())
	}
	if !errors.Is(err, &llmpool.Error{Code: llmpool.CodeHTTPStatus}) {
		t.Fatal("errors.Is by code failed")
	}
	if r == nil || r.Status != 400 || r.Err() == nil {
		t.Fatalf("the failed response is not returned: %+v", r)
	}
	// The client still works afterwards.
	if _, err := c.Chat(context.Background(), chatReq("ok")); err != nil {
		t.Fatal(err)
	}
}

func TestConnectError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	c, err := llmpool.NewClient(fmt.Sprintf(`{"base_url":"http://%s/v1","max_retries":0}`, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Chat(context.Background(), chatReq("x"))
	if e := asError(t, err); e.Code != llmpool.CodeConnect || e.Status != 0 {
		t.Fatalf("got %+v", e)
	}
}

func TestManyGoroutinesShareOneClient(t *testing.T) {
	const goroutines, calls = 50, 10
	c := newClient(t, `"max_concurrency":16,"pool_max_idle_per_host":16`)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*calls)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				msg := fmt.Sprintf("g%d-i%d", g, i)
				r, err := c.Chat(context.Background(), chatReq(msg))
				if err != nil {
					errs <- err
					continue
				}
				if r.Text != "Echo: "+msg {
					errs <- fmt.Errorf("%s: got %q", msg, r.Text)
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	m, err := c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if m["requests"] != float64(goroutines*calls) {
		t.Fatalf("metrics.requests = %v", m["requests"])
	}
	opened, _ := m["connections_opened"].(float64)
	if opened < 1 || opened > 32 {
		t.Fatalf("connections_opened = %v for %d calls with max_concurrency 16", m["connections_opened"], goroutines*calls)
	}
	t.Logf("500 calls opened %v connections, reused %v", m["connections_opened"], m["connections_reused"])
}

func TestSequentialCallsReuseOneConnection(t *testing.T) {
	c := newClient(t, "")
	for i := 0; i < 5; i++ {
		if _, err := c.Chat(context.Background(), chatReq("seq")); err != nil {
			t.Fatal(err)
		}
	}
	m, err := c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if m["connections_opened"] != float64(1) || m["connections_reused"] != float64(4) {
		t.Fatalf("opened %v reused %v", m["connections_opened"], m["connections_reused"])
	}
	if m["errors"] != float64(0) {
		t.Fatalf("errors %v", m["errors"])
	}
}

func TestChatStream(t *testing.T) {
	c := newClient(t, "")
	var deltas []string
	events := 0
	r, err := c.ChatStream(context.Background(), chatReq("stream these words please"), func(delta, event string) bool {
		var ev map[string]any
		if err := json.Unmarshal([]byte(event), &ev); err != nil {
			t.Errorf("event %q: %v", event, err)
		}
		events++
		deltas = append(deltas, delta)
		return true
	})
	if err != nil {
		t.Fatalf("ChatStream: %v", err)
	}
	joined := strings.Join(deltas, "")
	if joined != "Echo: stream these words please" || r.Text != joined {
		t.Fatalf("deltas %q text %q", deltas, r.Text)
	}
	nonEmpty := 0
	for _, d := range deltas {
		if d != "" {
			nonEmpty++
		}
	}
	if nonEmpty < 2 {
		t.Fatalf("expected several deltas, got %q", deltas)
	}
	var info struct {
		Chunks       int      `json:"chunks"`
		FinishReason *string  `json:"finish_reason"`
		TTFT         *float64 `json:"ttft_ms"`
	}
	if err := json.Unmarshal(r.Info, &info); err != nil {
		t.Fatal(err)
	}
	if info.Chunks != events || info.FinishReason == nil || info.TTFT == nil {
		t.Fatalf("info %s (events %d)", r.Info, events)
	}
}

func TestChatStreamAbortAndPanic(t *testing.T) {
	c := newClient(t, "")
	calls := 0
	r, err := c.ChatStream(context.Background(), chatReq("one two three four five"), func(delta, event string) bool {
		calls++
		return calls < 2
	})
	if e := asError(t, err); e.Code != llmpool.CodeCancelled {
		t.Fatalf("got %+v", e)
	}
	if calls != 2 || r == nil {
		t.Fatalf("calls %d response %v", calls, r)
	}

	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want boom", p)
			}
		}()
		_, _ = c.ChatStream(context.Background(), chatReq("a b c"), func(string, string) bool { panic("boom") })
		t.Fatal("the panic was swallowed")
	}()

	// A done context stops the stream at the next event.
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err = c.ChatStream(ctx, chatReq("one two three four five"), func(string, string) bool {
		n++
		cancel()
		return true
	})
	if e := asError(t, err); e.Code != llmpool.CodeCancelled || n != 1 {
		t.Fatalf("after ctx cancel: %+v, %d events", e, n)
	}
	// The client is fine afterwards.
	if _, err := c.Chat(context.Background(), chatReq("after")); err != nil {
		t.Fatal(err)
	}
}

func TestChatStreamHTTPError(t *testing.T) {
	c := newClient(t, `"max_retries":0`)
	pushFaults(t, `[{"type":"status","code":400}]`)
	called := false
	_, err := c.ChatStream(context.Background(), chatReq("x"), func(string, string) bool { called = true; return true })
	if e := asError(t, err); e.Code != llmpool.CodeHTTPStatus || e.Status != 400 || e.Body == "" || called {
		t.Fatalf("got %+v, callback called %v", e, called)
	}
}

func TestCancelStopsCallsInFlight(t *testing.T) {
	c := newClient(t, `"max_retries":0`)
	pushFaults(t, `[{"type":"delay_before_headers","ms":5000}]`)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Chat(context.Background(), chatReq("slow"))
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := c.Cancel(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if e := asError(t, err); e.Code != llmpool.CodeCancelled {
			t.Fatalf("got %+v", e)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("cancel took %v", el)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Cancel did not stop the call")
	}
	if _, err := c.Chat(context.Background(), chatReq("after")); err != nil {
		t.Fatalf("call after Cancel: %v", err)
	}
}

func TestAPIKeyAndKeyProvider(t *testing.T) {
	c, err := llmpool.NewClient(fmt.Sprintf(`{"base_url":%q,"max_retries":0}`, keyedURL))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Chat(context.Background(), chatReq("x"))
	if e := asError(t, err); e.Status != 401 {
		t.Fatalf("without key: %+v", e)
	}
	if err := c.SetAPIKey(testKey); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Chat(context.Background(), chatReq("x")); err != nil {
		t.Fatalf("with key: %v", err)
	}
	if err := c.SetAPIKey("bad\nkey"); err == nil {
		t.Fatal("a key with a newline was accepted")
	}

	if err := c.SetAPIKey("sk-wrong"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	asked := 0
	if err := c.SetKeyProvider(func() (string, bool) {
		mu.Lock()
		asked++
		mu.Unlock()
		return testKey, true
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Chat(context.Background(), chatReq("x")); err != nil {
		t.Fatalf("with provider: %v", err)
	}
	if _, err := c.Chat(context.Background(), chatReq("y")); err != nil {
		t.Fatalf("after provider: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked != 1 {
		t.Fatalf("provider asked %d times", asked)
	}
	if err := c.SetKeyProvider(nil); err != nil {
		t.Fatal(err)
	}
}

// A stream callback may call the same client (here Chat and Metrics).
func TestStreamCallbackMayCallTheClient(t *testing.T) {
	c := newClient(t, "")
	inner := ""
	_, err := c.ChatStream(context.Background(), chatReq("outer words"), func(delta, _ string) bool {
		if inner == "" {
			r, err := c.Chat(context.Background(), chatReq("inner"))
			if err != nil {
				t.Errorf("inner Chat: %v", err)
				return false
			}
			inner = r.Text
			if _, err := c.Metrics(); err != nil {
				t.Errorf("inner Metrics: %v", err)
			}
		}
		return true
	})
	if err != nil || inner != "Echo: inner" {
		t.Fatalf("stream %v, inner %q", err, inner)
	}
}

func TestWarmAndResetPool(t *testing.T) {
	c := newClient(t, "")
	n, err := c.Warm(3)
	if err != nil || n != 3 {
		t.Fatalf("Warm: %d %v", n, err)
	}
	if err := c.ResetPool(); err != nil {
		t.Fatal(err)
	}
}

func TestWarmContext(t *testing.T) {
	// A dead gateway: the first failure's code and reason.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	dead, err := llmpool.NewClient(fmt.Sprintf(`{"base_url":"http://%s/v1","max_retries":0}`, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	n, err := dead.WarmContext(context.Background(), 2)
	if e := asError(t, err); e.Code != llmpool.CodeConnect || e.Message == "" || n != 0 {
		t.Fatalf("dead gateway: %d %+v", n, e)
	}
	if _, err := dead.Warm(-1); asError(t, err).Code != llmpool.CodeInvalidArgument {
		t.Fatalf("Warm(-1): %v", err)
	}

	// A done ctx cancels it: before the start, and while the server holds
	// the answers (1 s).
	c := newClient(t, `"max_retries":0`)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.WarmContext(gone, 1); asError(t, err).Code != llmpool.CodeCancelled {
		t.Fatalf("done ctx: %v", err)
	}
	pushFaults(t, `{"type":"delay","ms":1000,"times":2}`)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err = c.WarmContext(ctx, 2)
	if e := asError(t, err); e.Code != llmpool.CodeCancelled {
		t.Fatalf("cancelled warm-up: %d %+v", n, e)
	}
	waited := time.Since(start)
	t.Logf("WarmContext with a 200 ms ctx, server answering after 1 s: CodeCancelled after %v", waited.Round(time.Millisecond))
	if waited > 700*time.Millisecond {
		t.Fatalf("a warm-up waiting for its answers took %v to cancel", waited)
	}

	// Stuck in its connects (a listener whose backlog is full), a warm-up
	// ends within 100 ms of its ctx.
	addr = unansweredListener(t)
	stuck, err := llmpool.NewClient(fmt.Sprintf(`{"base_url":"http://%s/v1","max_retries":0,"connect_timeout_ms":5000}`, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := stuck.WarmContext(ctx, 2)
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("the warm-up ended while connecting: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	start = time.Now()
	cancel()
	err = <-errc
	took := time.Since(start)
	if e := asError(t, err); e.Code != llmpool.CodeCancelled {
		t.Fatalf("cancelled while connecting: %+v", e)
	}
	t.Logf("WarmContext stuck in connect: CodeCancelled %v after its ctx", took.Round(time.Microsecond))
	if took > 100*time.Millisecond {
		t.Fatalf("ctx cancel took %v", took)
	}
}

// unansweredListener returns the address of a loopback listener whose
// backlog is full: connects to it hang until their timeout.
func unansweredListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	raw, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var lerr error
	if err := raw.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), 0) }); err != nil || lerr != nil {
		t.Fatalf("listen(0): %v %v", err, lerr)
	}
	addr := l.Addr().String()
	for i := 0; i < 16; i++ {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { _ = conn.Close() })
	}
	t.Fatal("the listener's backlog never filled")
	return ""
}

func TestClose(t *testing.T) {
	c, err := llmpool.NewClient(options(plainURL, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	_, err = c.Chat(context.Background(), chatReq("x"))
	if e := asError(t, err); e.Code != llmpool.CodeInvalidArgument {
		t.Fatalf("after Close: %+v", e)
	}
	if _, err := c.Metrics(); err == nil {
		t.Fatal("Metrics after Close")
	}
}

func TestDoneContextFailsBeforeSending(t *testing.T) {
	c := newClient(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Chat(ctx, chatReq("x"))
	if e := asError(t, err); e.Code != llmpool.CodeCancelled {
		t.Fatalf("got %+v", e)
	}
	m, _ := c.Metrics()
	if m["requests"] != float64(0) {
		t.Fatalf("requests %v", m["requests"])
	}
}

func TestContextCancelsOneCallWithin100ms(t *testing.T) {
	c := newClient(t, `"max_retries":0`)
	if _, err := c.Chat(context.Background(), chatReq("warm-up")); err != nil {
		t.Fatal(err)
	}
	pushFaults(t, `{"type":"delay","ms":3000}`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var cancelledAt time.Time
	go func() {
		_, err := c.Chat(ctx, chatReq("slow"))
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	// A sibling is untouched.
	if r, err := c.Chat(context.Background(), chatReq("sibling")); err != nil || r.Text != "Echo: sibling" {
		t.Fatalf("sibling: %v %v", r, err)
	}
	cancelledAt = time.Now()
	cancel()
	select {
	case err := <-done:
		if e := asError(t, err); e.Code != llmpool.CodeCancelled {
			t.Fatalf("got %+v", e)
		}
		if el := time.Since(cancelledAt); el > 100*time.Millisecond {
			t.Fatalf("ctx cancel took %v", el)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ctx did not cancel the call")
	}

	// A stream too, keeping its partial text.
	sctx, scancel := context.WithCancel(context.Background())
	events := make(chan struct{}, 16)
	sdone := make(chan *llmpool.Response, 1)
	go func() {
		r, _ := c.ChatStream(sctx, `{"model":"m","messages":[{"role":"user","content":"a b c d e f"}],"x_test_stream_delay_ms":200}`,
			func(string, string) bool { events <- struct{}{}; return true })
		sdone <- r
	}()
	<-events
	<-events
	cancelledAt = time.Now()
	scancel()
	select {
	case r := <-sdone:
		if el := time.Since(cancelledAt); el > 100*time.Millisecond {
			t.Fatalf("stream ctx cancel took %v", el)
		}
		if r == nil || r.Code != llmpool.CodeCancelled || r.Text == "" {
			t.Fatalf("stream after cancel: %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ctx did not cancel the stream")
	}
}

// ctx cancels one in-flight RequestRaw alone within 100 ms, and the body
// may be overwritten while the call waits (it was copied at submit).
func TestContextCancelsRequestRawWithin100ms(t *testing.T) {
	c := newClient(t, `"max_retries":0`)
	if _, err := c.Chat(context.Background(), chatReq("warm-up")); err != nil {
		t.Fatal(err)
	}
	pushFaults(t, `[{"type":"delay","ms":3000},{"type":"delay","ms":500}]`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.RequestRaw(ctx, "POST", "/echo", "application/octet-stream", []byte{0, 1, 2})
		done <- err
	}()
	if !waitInFlight(t, c, 1) {
		t.Fatal("the RequestRaw never was in flight")
	}
	// A sibling is untouched, and its body is free to reuse once sent.
	body := []byte("sibling \x00\xfe bytes")
	want := string(body)
	sib := make(chan error, 1)
	go func() {
		r, err := c.RequestRaw(context.Background(), "POST", "/echo", "application/octet-stream", body)
		if err == nil && string(r.Raw) != want {
			err = fmt.Errorf("sibling echoed %q, want %q", r.Raw, want)
		}
		sib <- err
	}()
	if !waitInFlight(t, c, 2) {
		t.Fatal("the sibling never was in flight")
	}
	for i := range body {
		body[i] = 'X'
	}
	if err := <-sib; err != nil {
		t.Fatalf("sibling: %v", err)
	}
	cancelledAt := time.Now()
	cancel()
	select {
	case err := <-done:
		el := time.Since(cancelledAt)
		if e := asError(t, err); e.Code != llmpool.CodeCancelled {
			t.Fatalf("got %+v", e)
		}
		t.Logf("RequestRaw cancelled by ctx in %v", el)
		if el > 100*time.Millisecond {
			t.Fatalf("ctx cancel took %v", el)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ctx did not cancel the RequestRaw")
	}
}

func TestWaitingGoroutinesPinNoThreads(t *testing.T) {
	c := newClient(t, `"max_retries":0`)
	if _, err := c.Chat(context.Background(), chatReq("warm-up")); err != nil {
		t.Fatal(err)
	}
	pushFaults(t, `{"type":"delay","ms":1000,"times":200}`)
	before := pprof.Lookup("threadcreate").Count()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	start := time.Now()
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := c.Chat(context.Background(), chatReq(fmt.Sprintf("g%d", i)))
			if err == nil && r.Text != fmt.Sprintf("Echo: g%d", i) {
				err = fmt.Errorf("call %d got %q", i, r.Text)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	created := pprof.Lookup("threadcreate").Count() - before
	t.Logf("200 calls to a 1 s server: %v, Go threads created: %d", time.Since(start), created)
	// Blocking cgo calls would need one OS thread per waiting goroutine
	// (~200 here). Some threads still appear (the scheduler, the race
	// detector, C threads calling back into Go on a loaded machine), but
	// far fewer than one per call.
	if created > 100 {
		t.Fatalf("Go created %d threads for 200 waiting calls", created)
	}
}

func TestRequestRawBytesAndHeaders(t *testing.T) {
	c := newClient(t, "")
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i*7 + 3)
	}
	r, err := c.RequestRaw(context.Background(), "POST", "/echo", "application/octet-stream", body,
		"Content-Type", "x-body-bytes", "x-absent")
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Raw) != string(body) {
		t.Fatalf("echoed %d bytes differ from the %d sent", len(r.Raw), len(body))
	}
	if v, _ := r.Header("content-type"); v != "application/octet-stream" {
		t.Fatalf("content-type %q", v)
	}
	if v, _ := r.Header("X-Body-Bytes"); v != fmt.Sprint(len(body)) {
		t.Fatalf("x-body-bytes %q", v)
	}
	if _, ok := r.Header("x-absent"); ok {
		t.Fatal("x-absent found")
	}
	s, err := c.RequestRaw(context.Background(), "POST", "/audio/speech", "application/json",
		[]byte(`{"model":"tts-1","input":"hi there","voice":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Header("content-type"); v != "audio/mpeg" {
		t.Fatalf("content-type %q", v)
	}
	if id, _ := s.Header("x-request-id"); !strings.HasPrefix(id, "req-") {
		t.Fatalf("x-request-id %q", id)
	}
	if len(s.Raw) != 8000 || string(s.Raw[:3]) != "ID3" {
		t.Fatalf("audio: %d bytes, starts %q", len(s.Raw), s.Raw[:3])
	}
	_, err = c.RequestRaw(context.Background(), "POST", "/echo", "a\r\nb: c", []byte("x"))
	var e *llmpool.Error
	if !errors.As(err, &e) || e.Code != llmpool.CodeInvalidArgument {
		t.Fatalf("want INVALID_ARGUMENT, got %v", err)
	}
}
