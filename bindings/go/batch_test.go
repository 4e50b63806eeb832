package llmpool_test

// Batch and BatchProgress: order, progress, limits, ctx cancellation and
// OS threads while items wait. The thread test comes first in this file
// (go test runs files in name order, so before any other test) so that no
// earlier test has left idle OS threads that could hide pinned ones.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmpool/llmpool-go"
	"github.com/llmpool/llmpool-go/internal/cgosleep"
)

// resetServer clears the plain server's queued faults and counters.
func resetServer(t *testing.T) {
	t.Helper()
	resp, err := http.Post(plainURL+"/_test/reset", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("reset server: %v", err)
	}
	_ = resp.Body.Close()
}

// chatRequestsSeen is how many chat requests the plain server received
// since its last reset.
func chatRequestsSeen(t *testing.T) int {
	t.Helper()
	return requestsSeen(t, "/v1/chat/completions")
}

// requestsSeen is how many requests for path the plain server received
// since its last reset (counted on arrival, before any delay fault).
func requestsSeen(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get(plainURL + "/_test/stats")
	if err != nil {
		t.Fatalf("server stats: %v", err)
	}
	defer resp.Body.Close()
	var st struct {
		ByPath map[string]int `json:"requests_by_path"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("server stats: %v", err)
	}
	return st.ByPath[path]
}

func batchReqs(prefix string, n int) []string {
	reqs := make([]string, n)
	for i := range reqs {
		reqs[i] = chatReq(fmt.Sprintf("%s %d", prefix, i))
	}
	return reqs
}

func inFlight(t *testing.T, c *llmpool.Client) int {
	t.Helper()
	m, err := c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := m["in_flight"].(float64)
	return int(n)
}

// waitInFlight polls until n calls of c are in flight (true) or 5 s pass.
func waitInFlight(t *testing.T, c *llmpool.Client, n int) bool {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if inFlight(t, c) >= n {
			return true
		}
	}
	return false
}

// threadFigures is one look at this process's threads.
type threadFigures struct {
	goCreated int // Ms the Go runtime has created (threadcreate profile)
	inCgo     int // goroutines inside a cgo call, each pinning an OS thread
	libOS     int // OS threads named llmpool-* (the C library's own)
	otherOS   int // every other OS thread (Go's, mostly)
}

func (f threadFigures) String() string {
	return fmt.Sprintf("Go-created threads %d, goroutines in cgo %d, OS threads: llmpool-* %d, others %d",
		f.goCreated, f.inCgo, f.libOS, f.otherOS)
}

func lookAtThreads(t *testing.T) threadFigures {
	t.Helper()
	f := threadFigures{goCreated: pprof.Lookup("threadcreate").Count()}
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[syscall") && strings.Contains(g, "._Cfunc_") {
			f.inCgo++
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatalf("list threads: %v", err)
	}
	for _, task := range tasks {
		comm, err := os.ReadFile("/proc/self/task/" + task.Name() + "/comm")
		if err != nil {
			continue // the thread ended meanwhile
		}
		if strings.HasPrefix(string(comm), "llmpool-") {
			f.libOS++
		} else {
			f.otherOS++
		}
	}
	return f
}

// While 64 batch items, then 64 RequestRaw calls, then 64 Warm calls wait
// on a 1 s server, no goroutine sits in cgo and Go starts no thread per
// call; the C library holds the calls. To show that the measurement does
// see pinned threads, 64 goroutines in a blocking cgo call (cgosleep.Sleep:
// usleep in C for 1 s, a test-only helper) are measured the same way as
// the control.
func TestBatchWaitingPinsNoThreads(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPED: reads /proc/self/task (Linux)")
	}
	const n = 64
	c := newClient(t, `"max_retries":0,"timeout_ms":20000`)
	if _, err := c.Chat(context.Background(), chatReq("warm-up")); err != nil {
		t.Fatal(err)
	}
	resetServer(t)
	t.Cleanup(func() { resetServer(t) })
	pushFaults(t, fmt.Sprintf(`{"type":"delay","ms":1000,"times":%d}`, n))
	before := lookAtThreads(t)
	reqs := batchReqs("wait", n)
	type out struct {
		res []*llmpool.Response
		err error
	}
	done := make(chan out, 1)
	start := time.Now()
	go func() {
		res, err := c.Batch(context.Background(), reqs, n)
		done <- out{res, err}
	}()
	if !waitInFlight(t, c, n) {
		t.Fatalf("%d batch items never were in flight at once (in_flight %d)", n, inFlight(t, c))
	}
	during := lookAtThreads(t)
	o := <-done
	elapsed := time.Since(start)
	if o.err != nil {
		t.Fatalf("Batch: %v", o.err)
	}
	for i, r := range o.res {
		if want := fmt.Sprintf("Echo: wait %d", i); r.Text != want {
			t.Fatalf("item %d: %q", i, r.Text)
		}
	}
	t.Logf("Batch of %d items, all in flight, to a 1 s server (%v):", n, elapsed.Round(time.Millisecond))
	t.Logf("  before: %v", before)
	t.Logf("  during: %v", during)

	// RequestRaw, on the async C API too.
	pushFaults(t, fmt.Sprintf(`{"type":"delay","ms":1000,"times":%d}`, n))
	rawBefore := lookAtThreads(t)
	rawErrs := make(chan error, n)
	var wg sync.WaitGroup
	start = time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := []byte(fmt.Sprintf("raw %d \x00\xff", i))
			r, err := c.RequestRaw(context.Background(), "POST", "/echo", "application/octet-stream", body)
			if err == nil && string(r.Raw) != string(body) {
				err = fmt.Errorf("RequestRaw %d echoed %q", i, r.Raw)
			}
			rawErrs <- err
		}(i)
	}
	if !waitInFlight(t, c, n) {
		t.Fatalf("%d RequestRaw calls never were in flight at once (in_flight %d)", n, inFlight(t, c))
	}
	rawDuring := lookAtThreads(t)
	wg.Wait()
	rawElapsed := time.Since(start)
	close(rawErrs)
	for err := range rawErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d goroutines in RequestRaw, all in flight, to the same server (%v):", n, rawElapsed.Round(time.Millisecond))
	t.Logf("  before: %v", rawBefore)
	t.Logf("  during: %v", rawDuring)

	// Warm, on the async C API too (each sends GET /models, delayed 1 s).
	resetServer(t)
	pushFaults(t, fmt.Sprintf(`{"type":"delay","ms":1000,"times":%d}`, n))
	warmBefore := lookAtThreads(t)
	warmErrs := make(chan error, n)
	start = time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Warm(1)
			warmErrs <- err
		}()
	}
	seen := false
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if requestsSeen(t, "/v1/models") >= n {
			seen = true
			break
		}
	}
	if !seen {
		t.Fatalf("%d Warm calls never were at the server at once (%d seen)", n, requestsSeen(t, "/v1/models"))
	}
	warmDuring := lookAtThreads(t)
	wg.Wait()
	warmElapsed := time.Since(start)
	close(warmErrs)
	for err := range warmErrs {
		if err != nil {
			t.Fatalf("Warm: %v", err)
		}
	}
	t.Logf("%d goroutines in Warm(1), all at the server, to the same server (%v):", n, warmElapsed.Round(time.Millisecond))
	t.Logf("  before: %v", warmBefore)
	t.Logf("  during: %v", warmDuring)

	// The control: blocking cgo calls (usleep in C), one OS thread each.
	sleepBefore := lookAtThreads(t)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cgosleep.Sleep(1000)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	sleepDuring := lookAtThreads(t)
	wg.Wait()
	t.Logf("Control: %d goroutines in a blocking cgo call (usleep in C, 1 s):", n)
	t.Logf("  before: %v", sleepBefore)
	t.Logf("  during: %v", sleepDuring)

	if sleepDuring.inCgo < n/2 {
		t.Fatalf("the measurement saw only %d of %d blocking calls inside cgo", sleepDuring.inCgo, n)
	}

	// Pinned waits would show ~64 goroutines in cgo and ~64 more Go
	// threads; allow a few for the scheduler, GC and the race detector.
	for _, m := range []struct {
		what           string
		before, during threadFigures
	}{{"batch items", before, during}, {"RequestRaw calls", rawBefore, rawDuring}, {"Warm calls", warmBefore, warmDuring}} {
		if m.during.inCgo > 2 {
			t.Fatalf("%d goroutines sat inside cgo while %d %s waited", m.during.inCgo, n, m.what)
		}
		if grew := m.during.goCreated - m.before.goCreated; grew > 16 {
			t.Fatalf("Go created %d threads while %d %s waited", grew, n, m.what)
		}
		if grew := m.during.otherOS - m.before.otherOS; grew > 16 {
			t.Fatalf("%d non-llmpool OS threads appeared while %d %s waited", grew, n, m.what)
		}
	}
}

func TestBatch(t *testing.T) {
	c := newClient(t, "")
	resetServer(t)
	t.Cleanup(func() { resetServer(t) })
	// The first request to arrive answers last: results still come back in
	// request order.
	pushFaults(t, `{"type":"delay","ms":300}`)
	reqs := batchReqs("item", 20)
	var seen []int
	res, err := c.BatchProgress(context.Background(), reqs, 4, func(done, total int) {
		if total != len(reqs) {
			t.Errorf("total %d", total)
		}
		seen = append(seen, done)
	})
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if len(res) != len(reqs) {
		t.Fatalf("%d results", len(res))
	}
	for i, r := range res {
		if want := fmt.Sprintf("Echo: item %d", i); r.Text != want || r.Err() != nil {
			t.Fatalf("item %d: %q %v", i, r.Text, r.Err())
		}
	}
	if len(seen) != len(reqs) {
		t.Fatalf("progress called %d times: %v", len(seen), seen)
	}
	for i, d := range seen {
		if d != i+1 {
			t.Fatalf("progress %v", seen)
		}
	}

	// One bad item fails alone, with llmpool's reason; the error is that
	// item's.
	reqs[3] = "not json"
	reqs[5] = "[1]"
	res, err = c.Batch(context.Background(), reqs, 0)
	if e := asError(t, err); e.Code != llmpool.CodeInvalidArgument || !strings.Contains(e.Message, "request_json: invalid JSON") {
		t.Fatalf("got %+v", e)
	}
	for i, r := range res {
		if (i == 3 || i == 5) != (r.Err() != nil) {
			t.Fatalf("item %d: err %v", i, r.Err())
		}
	}
	if res[5].Code != llmpool.CodeInvalidArgument || !strings.Contains(res[5].ErrorText, "expected a JSON object") {
		t.Fatalf("item 5: %+v", res[5])
	}
	if res, err := c.Batch(context.Background(), nil, 0); err != nil || len(res) != 0 {
		t.Fatalf("empty batch: %v %v", res, err)
	}
	if _, err := c.Batch(context.Background(), reqs, -1); asError(t, err).Code != llmpool.CodeInvalidArgument {
		t.Fatalf("maxConcurrency -1: %v", err)
	}
}

// maxInFlight runs batch while sampling c's calls in flight and returns
// the most seen at once.
func maxInFlight(t *testing.T, c *llmpool.Client, batch func() error) int {
	t.Helper()
	errs := make(chan error, 1)
	go func() { errs <- batch() }()
	most := 0
	for {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("Batch: %v", err)
			}
			return most
		default:
		}
		if n := inFlight(t, c); n > most {
			most = n
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The limit is the C batch's: maxConcurrency, else the client's
// max_concurrency option, else 16.
func TestBatchConcurrencyLimits(t *testing.T) {
	resetServer(t)
	t.Cleanup(func() { resetServer(t) })
	cases := []struct {
		name    string
		options string
		items   int
		max     int
		want    int
	}{
		{"explicit 3", `"max_retries":0`, 6, 3, 3},
		{"default 16", `"max_retries":0`, 20, 0, 16},
		{"client max_concurrency 20", `"max_retries":0,"max_concurrency":20`, 20, 0, 20},
	}
	for _, tc := range cases {
		c := newClient(t, tc.options)
		pushFaults(t, fmt.Sprintf(`{"type":"delay","ms":300,"times":%d}`, tc.items))
		reqs := batchReqs("lim", tc.items)
		most := maxInFlight(t, c, func() error {
			_, err := c.Batch(context.Background(), reqs, tc.max)
			return err
		})
		t.Logf("%s: %d items, at most %d in flight", tc.name, tc.items, most)
		if most != tc.want {
			t.Fatalf("%s: %d in flight at most, want %d", tc.name, most, tc.want)
		}
	}
}

// ctx ends a batch: the items in flight are cancelled promptly, the rest
// never sent, the finished ones kept.
func TestBatchContextCancel(t *testing.T) {
	c := newClient(t, `"max_retries":0`)
	resetServer(t)
	t.Cleanup(func() { resetServer(t) })
	// The first 4 requests to arrive are answered at once, the next 4 wait
	// 3 s: as a worker takes the next item only after its last one ended,
	// items 0-7 are sent (4 answered, 4 in flight), 8-19 never are.
	pushFaults(t, `[{"type":"headers","headers":{},"times":4},{"type":"delay","ms":3000,"times":4}]`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var cancelledAt time.Time
	var seen []int
	reqs := batchReqs("c", 20)
	res, err := c.BatchProgress(ctx, reqs, 4, func(done, total int) {
		seen = append(seen, done)
		if done == 4 {
			go func() {
				// Let the next 4 items reach the server.
				if !waitInFlight(t, c, 4) {
					t.Error("the next 4 items never were in flight")
				}
				time.Sleep(100 * time.Millisecond)
				mu.Lock()
				cancelledAt = time.Now()
				mu.Unlock()
				cancel()
			}()
		}
	})
	returned := time.Now()
	mu.Lock()
	took := returned.Sub(cancelledAt)
	mu.Unlock()
	t.Logf("Batch returned %v after ctx was cancelled; progress %v", took.Round(time.Microsecond), seen)
	if took > time.Second {
		t.Fatalf("Batch returned %v after cancel", took)
	}
	if e := asError(t, err); e.Code != llmpool.CodeCancelled {
		t.Fatalf("batch error %+v", e)
	}
	var info struct {
		Attempts int `json:"attempts"`
	}
	answered, cancelled := 0, 0
	for i, r := range res {
		if err := json.Unmarshal(r.Info, &info); err != nil {
			t.Fatalf("item %d info %q: %v", i, r.Info, err)
		}
		switch {
		case i >= 8:
			if r.Code != llmpool.CodeCancelled || info.Attempts != 0 || !strings.Contains(r.ErrorText, "never sent") {
				t.Fatalf("not-sent item %d: %+v %s", i, r, r.Info)
			}
		case r.Err() == nil:
			if want := fmt.Sprintf("Echo: c %d", i); r.Text != want {
				t.Fatalf("item %d: %q", i, r.Text)
			}
			answered++
		default:
			if r.Code != llmpool.CodeCancelled || info.Attempts < 1 || strings.Contains(r.ErrorText, "never sent") {
				t.Fatalf("in-flight item %d: %+v %s", i, r, r.Info)
			}
			cancelled++
		}
	}
	if answered != 4 || cancelled != 4 {
		t.Fatalf("items 0-7: %d answered, %d cancelled in flight; want 4 and 4", answered, cancelled)
	}
	if len(seen) != 8 || seen[7] != 8 {
		t.Fatalf("progress %v, want 1..8 (items never sent are not counted)", seen)
	}
	if got := chatRequestsSeen(t); got != 8 {
		t.Fatalf("the server saw %d chat requests, want 8", got)
	}
	if n := inFlight(t, c); n != 0 {
		t.Fatalf("%d calls still in flight after Batch returned", n)
	}
}

// A panic in progress cancels the items in flight, waits for them and
// reaches the caller; the client stays usable.
func TestBatchProgressPanic(t *testing.T) {
	c := newClient(t, `"max_retries":0`)
	resetServer(t)
	t.Cleanup(func() { resetServer(t) })
	pushFaults(t, `[{"type":"headers","headers":{}},{"type":"delay","ms":3000,"times":2}]`)
	start := time.Now()
	got := func() (p any) {
		defer func() { p = recover() }()
		_, _ = c.BatchProgress(context.Background(), batchReqs("p", 10), 2, func(done, total int) {
			if done == 1 {
				waitInFlight(t, c, 2) // the next one is in flight too
				panic("progress boom")
			}
		})
		return nil
	}()
	if got != "progress boom" {
		t.Fatalf("recovered %v", got)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("the panic took %v to come through (in-flight items not cancelled?)", el)
	}
	if n := inFlight(t, c); n != 0 {
		t.Fatalf("%d calls still in flight after the panic", n)
	}
	if r, err := c.Chat(context.Background(), chatReq("after")); err != nil || r.Text != "Echo: after" {
		t.Fatalf("after the panic: %v %v", r, err)
	}
}

// Batch items run on the C library's threads (not Go threads): the key
// provider is then called from there, through the cgo handle.
func TestKeyProviderFromBatchWorkers(t *testing.T) {
	c, err := llmpool.NewClient(fmt.Sprintf(`{"base_url":%q,"max_retries":0,"api_key":"sk-wrong"}`, keyedURL))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
	reqs := batchReqs("k", 8)
	res, err := c.Batch(context.Background(), reqs, 4)
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	for i, r := range res {
		if r.Text != fmt.Sprintf("Echo: k %d", i) {
			t.Fatalf("item %d: %q", i, r.Text)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if asked < 1 || asked > len(reqs) {
		t.Fatalf("provider asked %d times", asked)
	}
}
