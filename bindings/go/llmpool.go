// Package llmpool is a Go binding (cgo) for the llmpool C library: a
// pooled, retrying, cost-aware client for OpenAI-compatible AI gateways.
//
// One *Client is safe for use by many goroutines at once; share it (the
// C client keeps one connection pool). Requests and responses are JSON
// strings as the gateway speaks them. Chat, Embeddings, Request,
// RequestRaw, ChatStream, every item of Batch and the warm-up (Warm,
// WarmContext) run on llmpool's own threads (its async C API): the
// calling goroutine waits in a select, pinning no OS thread, and its ctx
// cancels that call (or that batch) alone within about 100 ms. No call
// waits inside cgo; the quick ones that do no I/O (Metrics, SetAPIKey,
// Cancel, ResetPool, ...) are plain cgo calls.
//
// Failures are returned as *Error values (use errors.As) carrying the
// llmpool code, its name, the HTTP status and the body.
//
// Building: cgo finds libllmpool through pkg-config (`#cgo pkg-config:
// llmpool`, see cgo.go): install the C library (scripts/install.sh, or the
// C tarball of a release) and put its lib/pkgconfig on PKG_CONFIG_PATH.
package llmpool

/*
#include <stdint.h>
#include <stdlib.h>
#include "llmpool.h"

enum llmpool_code go_set_key_provider(llmpool_client *c, uintptr_t h);
enum llmpool_code go_set_log_callback(llmpool_client *c, int min_level, uintptr_t h);
enum llmpool_code go_chat_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call);
enum llmpool_code go_embeddings_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call);
enum llmpool_code go_request_async(llmpool_client *c, const char *m, const char *p, const char *b, uintptr_t h,
                                   llmpool_call **call);
enum llmpool_code go_request_raw_async(llmpool_client *c, const char *m, const char *p, const char *ct,
                                       const uint8_t *b, size_t n, uintptr_t h, llmpool_call **call);
enum llmpool_code go_chat_stream_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call);
enum llmpool_code go_client_warm_async(llmpool_client *c, size_t n, uintptr_t h, llmpool_call **call);
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"
)

// Result codes (the numbers of the C enum llmpool_code; they never change).
const (
	CodeOK              = 0
	CodeInvalidArgument = 1
	CodeConnect         = 2
	CodeTLS             = 3
	CodeTimeout         = 4
	CodeHTTPStatus      = 5
	CodeIO              = 6
	CodeProtocol        = 7
	CodePoolExhausted   = 8
	CodeBudgetExceeded  = 9
	CodeCancelled       = 10
	CodeRateLimited     = 11
	CodePanic           = 99
)

// Error is a failed llmpool call. Code is the llmpool code (CodeTimeout,
// CodeHTTPStatus, ...), CodeName its name ("LLMPOOL_TIMEOUT"), Status the
// HTTP status of the last answer (0 when none arrived), Body the raw
// answer body (for HTTP errors the gateway's JSON error) and Message the
// library's explanation (never contains the API key).
type Error struct {
	Code     int
	CodeName string
	Status   int
	Body     string
	Message  string
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("llmpool: %s (HTTP %d): %s", e.CodeName, e.Status, e.Message)
	}
	return fmt.Sprintf("llmpool: %s: %s", e.CodeName, e.Message)
}

// Is reports whether target is an *Error with the same Code, so
// errors.Is(err, &llmpool.Error{Code: llmpool.CodeTimeout}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// CodeName returns the name of a result code, e.g. "LLMPOOL_TIMEOUT".
func CodeName(code int) string {
	return C.GoString(C.llmpool_code_name(C.int(code)))
}

// Version returns the C library's version, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.llmpool_version())
}

func newError(code int, msg string) *Error {
	return &Error{Code: code, CodeName: CodeName(code), Message: msg}
}

// Response is one call's result, copied out of the C response (which is
// freed at once, except for Embeddings answers, whose C response is kept
// for Response.Embeddings and freed by it or by the garbage collector:
// nothing here needs closing).
type Response struct {
	Code   int    // llmpool code; CodeOK on success
	Status int    // HTTP status of the last answer, 0 if none
	Text   string // choices[0].message.content of a chat answer (streams: all deltas)
	Body   string // raw answer body (streams: the SSE bytes only with the option keep_stream_body)
	// Info is the call details object: attempts, retries,
	// connection_reused, latency_ms, usage, request_id, and for streams
	// ttft_ms, chunks, finish_reason.
	Info      json.RawMessage
	ErrorText string // why the call failed, "" on success

	owned *owned // the C response of an Embeddings answer (embeddings.go)
	// Raw is the answer's body as bytes (RequestRaw only; nil otherwise),
	// e.g. audio/mpeg.
	Raw []byte
	// Headers holds the response headers RequestRaw asked for, by
	// lower-case name; see Header.
	Headers map[string]string

	completion json.RawMessage // see Completion (agents.go)
}

// Header returns a copied-out response header (case-insensitive), or ""
// and false when the answer had none (or it was not asked for).
func (r *Response) Header(name string) (string, bool) {
	v, ok := r.Headers[strings.ToLower(name)]
	return v, ok
}

// Err returns the response's failure as an *Error, or nil on success.
func (r *Response) Err() error {
	if r == nil || r.Code == CodeOK {
		return nil
	}
	return &Error{Code: r.Code, CodeName: CodeName(r.Code), Status: r.Status, Body: r.Body, Message: r.ErrorText}
}

// JSON unmarshals the body into v.
func (r *Response) JSON(v any) error {
	return json.Unmarshal([]byte(r.Body), v)
}

// takeResponse copies a C response and frees it; nil for NULL.
func takeResponse(p *C.llmpool_response) *Response {
	if p == nil {
		return nil
	}
	defer C.llmpool_response_free(p)
	return copyResponse(p)
}

// copyResponse copies a C response's fields (p is not NULL).
func copyResponse(p *C.llmpool_response) *Response {
	var n C.size_t
	body := C.llmpool_response_body(p, &n)
	return &Response{
		Code:       int(C.llmpool_response_code(p)),
		Status:     int(C.llmpool_response_status(p)),
		Text:       C.GoString(C.llmpool_response_text(p)),
		Body:       C.GoStringN(body, C.int(n)),
		Info:       json.RawMessage(C.GoString(C.llmpool_response_info(p))),
		ErrorText:  C.GoString(C.llmpool_response_error(p)),
		completion: completionOf(p),
	}
}

// Client is a pooled client for one gateway, safe for concurrent use.
type Client struct {
	mu       sync.Mutex
	idle     *sync.Cond // signalled when inflight drops to 0
	ptr      *C.llmpool_client
	inflight int
	closed   bool
	keys     []cgo.Handle // key provider handles, deleted on Close
	// maxConcurrency is the client's max_concurrency option (0: none), the
	// default limit of a Batch as in the C batch.
	maxConcurrency int
}

// optCString is NULL for "", else a C copy of s; free it with C.free
// (which accepts NULL).
func optCString(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

// NewClient creates a client from a JSON object of options (see the
// README: base_url, api_key, timeout_ms, max_retries, max_concurrency,
// pool_max_idle_per_host, ca_file, ...). "" means all defaults plus the
// environment (LLMPOOL_BASE_URL, LLMPOOL_API_KEY).
func NewClient(optionsJSON string) (*Client, error) {
	copts := optCString(optionsJSON)
	defer C.free(unsafe.Pointer(copts))
	var errbuf [1024]C.char
	var p *C.llmpool_client
	code := C.llmpool_client_new(copts, &p, &errbuf[0], C.size_t(len(errbuf)))
	if code != C.LLMPOOL_OK || p == nil {
		return nil, newError(int(code), C.GoString(&errbuf[0]))
	}
	c := &Client{ptr: p, maxConcurrency: optionMaxConcurrency(optionsJSON)}
	c.idle = sync.NewCond(&c.mu)
	runtime.SetFinalizer(c, (*Client).Close)
	return c, nil
}

// acquire marks a call in flight and returns the C client, or an error
// once the client is closed. Calls may nest (a stream callback may call
// the same client).
func (c *Client) acquire() (*C.llmpool_client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, newError(CodeInvalidArgument, "client is closed")
	}
	c.inflight++
	return c.ptr, nil
}

func (c *Client) release() {
	c.mu.Lock()
	c.inflight--
	if c.inflight == 0 {
		c.idle.Broadcast()
	}
	c.mu.Unlock()
}

// Close waits for calls in flight to finish, then frees the client and
// its connections. Later calls fail with CodeInvalidArgument. Closing
// twice is a no-op. Never call it from a stream or progress callback.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for c.inflight > 0 {
		c.idle.Wait()
	}
	p := c.ptr
	c.ptr = nil
	keys := c.keys
	c.keys = nil
	c.mu.Unlock()
	runtime.SetFinalizer(c, nil)
	C.llmpool_client_free(p)
	for _, h := range keys {
		h.Delete()
	}
	return nil
}

// ctxErr maps a done context to a cancelled *Error before a call starts.
func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return newError(CodeCancelled, "context: "+err.Error())
	}
	return nil
}

// Chat sends POST {base_url}/chat/completions with req (a JSON object)
// and returns the answer; Text holds the first choice's content.
//
// The call runs on llmpool's own threads (its async C API): the calling
// goroutine waits in a select, not in cgo, so it pins no OS thread. When
// ctx (may be nil) is done, this call alone is cancelled (within about
// 100 ms) and fails with CodeCancelled.
func (c *Client) Chat(ctx context.Context, req string) (*Response, error) {
	return c.async(ctx, nil, func(p *C.llmpool_client, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		creq := C.CString(req)
		defer C.free(unsafe.Pointer(creq))
		return C.go_chat_async(p, creq, h, call)
	})
}

// Embeddings sends POST {base_url}/embeddings; otherwise like Chat. The
// Response's Embeddings method gives the vectors as float32s (ask for
// "encoding_format": "base64" for half the bytes on the wire).
func (c *Client) Embeddings(ctx context.Context, req string) (*Response, error) {
	return c.asyncWith(ctx, nil, keepResponse, func(p *C.llmpool_client, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		creq := C.CString(req)
		defer C.free(unsafe.Pointer(creq))
		return C.go_embeddings_async(p, creq, h, call)
	})
}

// Request sends any method to path below base_url (e.g. "GET",
// "/models"), with body a JSON object or "" for none; otherwise like Chat.
func (c *Client) Request(ctx context.Context, method, path, body string) (*Response, error) {
	return c.async(ctx, nil, func(p *C.llmpool_client, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		cm := C.CString(method)
		defer C.free(unsafe.Pointer(cm))
		cp := C.CString(path)
		defer C.free(unsafe.Pointer(cp))
		cb := optCString(body)
		defer C.free(unsafe.Pointer(cb))
		return C.go_request_async(p, cm, cp, cb, h, call)
	})
}

// RequestRaw sends any method to path below base_url with any bytes as
// the body (nil: no body), with the Content-Type contentType ("" for
// none), e.g. "multipart/form-data; boundary=...". The answer's bytes are
// in Response.Raw, and the response headers named in headers (default:
// content-type and x-request-id) in Response.Headers. body is copied by
// the C library when the call is submitted (it may be reused as soon as
// RequestRaw returns, or even while it waits); retries send the same
// bytes.
//
// Like Chat, the call runs on llmpool's own threads (its async C API):
// the goroutine waits in a select, not in cgo, and a done ctx (may be
// nil) cancels this call alone within about 100 ms (CodeCancelled). A bad
// method, a path not starting with "/" or a content type with control
// characters is refused before anything is sent (CodeInvalidArgument).
func (c *Client) RequestRaw(ctx context.Context, method, path, contentType string, body []byte, headers ...string) (*Response, error) {
	if len(headers) == 0 {
		headers = []string{"content-type", "x-request-id"}
	}
	return c.asyncWith(ctx, nil, rawTake(headers), func(p *C.llmpool_client, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		cm := C.CString(method)
		defer C.free(unsafe.Pointer(cm))
		cp := C.CString(path)
		defer C.free(unsafe.Pointer(cp))
		cct := optCString(contentType)
		defer C.free(unsafe.Pointer(cct))
		var cb *C.uint8_t
		if len(body) > 0 {
			// Go memory may be passed to C for the duration of the call
			// (it holds no Go pointers); the submit copies it.
			cb = (*C.uint8_t)(unsafe.Pointer(&body[0]))
		}
		code := C.go_request_raw_async(p, cm, cp, cct, cb, C.size_t(len(body)), h, call)
		runtime.KeepAlive(body)
		return code
	})
}

// rawTake returns a take function for RequestRaw's done: it copies the
// answer's bytes and the named headers, then frees the C response.
func rawTake(headers []string) func(*C.llmpool_response) *Response {
	return func(p *C.llmpool_response) *Response {
		if p == nil {
			return nil
		}
		defer C.llmpool_response_free(p)
		r := copyResponse(p)
		var n C.size_t
		b := C.llmpool_response_body(p, &n)
		r.Raw = C.GoBytes(unsafe.Pointer(b), C.int(n))
		r.Headers = map[string]string{}
		for _, h := range headers {
			ch := C.CString(h)
			v := C.llmpool_response_header(p, ch)
			C.free(unsafe.Pointer(ch))
			if v != nil {
				r.Headers[strings.ToLower(h)] = C.GoString(v)
			}
		}
		return r
	}
}

// async submits one call and waits for its done, or for ctx, which then
// cancels the call and still waits for its done (it comes promptly).
func (c *Client) async(ctx context.Context, stream *streamState, submit func(*C.llmpool_client, C.uintptr_t, **C.llmpool_call) C.enum_llmpool_code) (*Response, error) {
	return c.asyncWith(ctx, stream, takeResponse, submit)
}

// asyncWith is async with take turning the C response into a Response.
func (c *Client) asyncWith(ctx context.Context, stream *streamState, take func(*C.llmpool_response) *Response, submit func(*C.llmpool_client, C.uintptr_t, **C.llmpool_call) C.enum_llmpool_code) (*Response, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	p, err := c.acquire()
	if err != nil {
		return nil, err
	}
	defer c.release()
	r, code := await(ctx, p, stream, take, submit)
	if code != C.LLMPOOL_OK {
		return nil, newError(int(code), "the request was refused before sending (invalid JSON, method, path or content type, or a closed client)")
	}
	if r == nil {
		return nil, newError(CodePanic, "llmpool returned no response")
	}
	return r, r.Err()
}

// await submits one call on p (which the caller holds with acquire) and
// waits for its done, or for ctx (may be nil), which then cancels the call
// and still waits for its done (it comes promptly). A refused submit
// returns a nil Response and its code (done never runs); otherwise the
// code is LLMPOOL_OK and the Response nil only if done got no response.
func await(ctx context.Context, p *C.llmpool_client, stream *streamState, take func(*C.llmpool_response) *Response, submit func(*C.llmpool_client, C.uintptr_t, **C.llmpool_call) C.enum_llmpool_code) (*Response, C.enum_llmpool_code) {
	st := &asyncState{ch: make(chan *Response, 1), stream: stream, take: take}
	h := cgo.NewHandle(st)
	defer h.Delete()
	var call *C.llmpool_call
	if code := submit(p, C.uintptr_t(h), &call); code != C.LLMPOOL_OK {
		return nil, code
	}
	defer C.llmpool_call_free(call)
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	select {
	case r := <-st.ch:
		return r, C.LLMPOOL_OK
	case <-done:
		C.llmpool_call_cancel(call)
		return <-st.ch, C.LLMPOOL_OK
	}
}

// ChatStream streams a chat completion ("stream": true is added). fn is
// called once per chunk event, in order (never concurrently, on a
// goroutine of llmpool's callback thread), with the chunk's content delta
// (often "" for the first and last events) and the event's raw JSON;
// return false to stop the stream (the call then fails with
// CodeCancelled). When ctx is done the stream is cancelled within about
// 100 ms. The Response's Text is every delta received, and its Info has
// ttft_ms, chunks, finish_reason and usage. A panic in fn stops the
// stream and is raised again on this goroutine once the call has ended.
func (c *Client) ChatStream(ctx context.Context, req string, fn func(delta, event string) bool) (*Response, error) {
	if fn == nil {
		return nil, newError(CodeInvalidArgument, "ChatStream: fn is nil")
	}
	st := &streamState{fn: fn}
	if ctx != nil && ctx.Done() != nil {
		st.fn = func(delta, event string) bool {
			if ctx.Err() != nil {
				return false
			}
			return fn(delta, event)
		}
	}
	r, err := c.async(ctx, st, func(p *C.llmpool_client, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		creq := C.CString(req)
		defer C.free(unsafe.Pointer(creq))
		return C.go_chat_stream_async(p, creq, h, call)
	})
	if st.panicked != nil {
		panic(st.panicked)
	}
	return r, err
}

// Metrics returns the client's metrics: requests, errors, retries,
// connections_opened, connections_reused, in_flight, latency_ms, ...
func (c *Client) Metrics() (map[string]any, error) {
	p, err := c.acquire()
	if err != nil {
		return nil, err
	}
	defer c.release()
	s := C.llmpool_client_metrics(p)
	if s == nil {
		return nil, newError(CodeInvalidArgument, "no metrics")
	}
	defer C.llmpool_string_free(s)
	var m map[string]any
	if err := json.Unmarshal([]byte(C.GoString(s)), &m); err != nil {
		return nil, err
	}
	return m, nil
}

// MetricsPrometheus returns the client's metrics in the Prometheus text
// exposition format 0.0.4, ready to serve on /metrics.
func (c *Client) MetricsPrometheus() (string, error) {
	p, err := c.acquire()
	if err != nil {
		return "", err
	}
	defer c.release()
	s := C.llmpool_client_metrics_prometheus(p)
	if s == nil {
		return "", newError(CodeInvalidArgument, "no metrics")
	}
	defer C.llmpool_string_free(s)
	return C.GoString(s), nil
}

// LogLevel is an llmpool log level (the C enum llmpool_log_level).
type LogLevel int

// Log levels, most severe first; a callback set at a level also gets the
// more severe ones.
const (
	LogError LogLevel = 1
	LogWarn  LogLevel = 2
	LogInfo  LogLevel = 3
	LogDebug LogLevel = 4
	LogTrace LogLevel = 5
)

// String gives "ERROR", "WARN", "INFO", "DEBUG" or "TRACE".
func (l LogLevel) String() string {
	switch l {
	case LogError:
		return "ERROR"
	case LogWarn:
		return "WARN"
	case LogInfo:
		return "INFO"
	case LogDebug:
		return "DEBUG"
	case LogTrace:
		return "TRACE"
	}
	return fmt.Sprintf("LEVEL(%d)", int(l))
}

// SetLogFunc sends every log line at level and more severe to fn. fn MAY
// RUN ON ANY THREAD, several at once (every goroutine's call and llmpool's
// own threads): it must be safe for concurrent use and quick. A panic in
// fn loses that line only. nil turns logging off (also the LLMPOOL_LOG
// stderr fallback). With Go 1.21 or newer, SetSlog (slog.go) forwards to
// a log/slog Logger instead.
func (c *Client) SetLogFunc(level LogLevel, fn func(level LogLevel, line string)) error {
	p, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.release()
	var h cgo.Handle
	if fn != nil {
		h = cgo.NewHandle(&logState{fn: fn})
	}
	if code := C.go_set_log_callback(p, C.int(level), C.uintptr_t(h)); code != C.LLMPOOL_OK {
		if h != 0 {
			h.Delete()
		}
		return newError(int(code), fmt.Sprintf("cannot set the log callback (level %d)", int(level)))
	}
	if h != 0 {
		// Kept until Close: a line may still be on its way to an older one.
		c.mu.Lock()
		c.keys = append(c.keys, h)
		c.mu.Unlock()
	}
	return nil
}

// SetLogger writes log lines at level and more severe to the standard
// library logger l as "llmpool LEVEL line".
func (c *Client) SetLogger(l *log.Logger, level LogLevel) error {
	if l == nil {
		return c.SetLogFunc(level, nil)
	}
	return c.SetLogFunc(level, func(lv LogLevel, line string) {
		l.Printf("llmpool %s %s", lv, line)
	})
}

// SetAPIKey replaces the API key for every later request ("" removes it).
func (c *Client) SetAPIKey(key string) error {
	p, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.release()
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	if code := C.llmpool_client_set_api_key(p, ck); code != C.LLMPOOL_OK {
		return newError(int(code), "invalid API key (control characters?)")
	}
	return nil
}

// SetKeyProvider installs fn, called when a call gets HTTP 401: it returns
// a fresh key and true (or false for "no new key"); the call is retried
// once with that key, which then serves every later call. fn may run on
// several threads at once. nil removes the provider.
func (c *Client) SetKeyProvider(fn func() (string, bool)) error {
	p, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.release()
	var h cgo.Handle
	if fn != nil {
		h = cgo.NewHandle(&keyState{fn: fn})
	}
	if code := C.go_set_key_provider(p, C.uintptr_t(h)); code != C.LLMPOOL_OK {
		if h != 0 {
			h.Delete()
		}
		return newError(int(code), "cannot set the key provider")
	}
	if h != 0 {
		// Kept until Close: a call in flight may still use an older one.
		c.mu.Lock()
		c.keys = append(c.keys, h)
		c.mu.Unlock()
	}
	return nil
}

// Cancel makes every call of this client in flight now (on any
// goroutine) return promptly with CodeCancelled; later calls run normally.
func (c *Client) Cancel() error {
	p, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.release()
	if code := C.llmpool_client_cancel(p); code != C.LLMPOOL_OK {
		return newError(int(code), "cancel failed")
	}
	return nil
}

// ResetPool drops every idle pooled connection now.
func (c *Client) ResetPool() error {
	p, err := c.acquire()
	if err != nil {
		return err
	}
	defer c.release()
	if code := C.llmpool_client_reset_pool(p); code != C.LLMPOOL_OK {
		return newError(int(code), "reset failed")
	}
	return nil
}

// Warm is WarmContext with context.Background(): it opens up to n
// connections ahead of the first calls and returns how many it opened.
func (c *Client) Warm(n int) (int, error) {
	return c.WarmContext(context.Background(), n)
}

// WarmContext opens up to n connections ahead of the first calls (TCP
// and TLS handshakes done; it sends n concurrent GET /models and keeps
// their connections pooled) and returns how many it opened. It fails with
// the first failure's *Error only when none opened.
//
// Like Chat, the handshakes run on llmpool's own threads (its async C
// API): the goroutine waits in a select, not in cgo, so it pins no OS
// thread. When ctx (may be nil) is done the warm-up is cancelled and
// fails with CodeCancelled.
func (c *Client) WarmContext(ctx context.Context, n int) (int, error) {
	if n < 0 {
		return 0, newError(CodeInvalidArgument, "Warm: n < 0")
	}
	r, err := c.async(ctx, nil, func(p *C.llmpool_client, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		return C.go_client_warm_async(p, C.size_t(n), h, call)
	})
	if r == nil {
		return 0, err
	}
	var info struct {
		Opened int `json:"opened"`
	}
	_ = json.Unmarshal(r.Info, &info)
	if err != nil {
		return info.Opened, err
	}
	if ctx != nil && ctx.Err() != nil {
		// Cancelled after its connects were done, llmpool may answer OK
		// (with the connects counted); the warm-up did not finish.
		return 0, newError(CodeCancelled, "warm-up cancelled: context: "+ctx.Err().Error())
	}
	return info.Opened, nil
}
