package llmpool

// What agents are built on: the Responses and Messages APIs, typed deltas
// of all three streaming APIs, and the assembled answer of every call
// (Response.Completion). Every call here runs on llmpool's own threads
// like Chat: the goroutine waits in a select, not in cgo.

/*
#include <stdint.h>
#include <stdlib.h>
#include "llmpool.h"

enum llmpool_code go_responses_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call);
enum llmpool_code go_messages_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call);
enum llmpool_code go_responses_stream_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call);
enum llmpool_code go_messages_stream_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call);
enum llmpool_code go_stream_deltas_async(llmpool_client *c, int api, const char *req, uintptr_t h,
                                         llmpool_call **call);
*/
import "C"

import (
	"context"
	"encoding/json"
	"unsafe"
)

// API is the API a stream speaks (the C enum llmpool_api).
type API int

// The streaming APIs, for StreamDeltas.
const (
	APIChat      API = 0 // POST /chat/completions
	APIResponses API = 1 // POST /responses (OpenAI's Responses API)
	APIMessages  API = 2 // POST /messages (Anthropic's Messages API)
)

// DeltaKind says what a Delta carries (the C enum llmpool_delta_kind).
type DeltaKind int

// Delta kinds.
const (
	DeltaContent   DeltaKind = 0 // answer text
	DeltaReasoning DeltaKind = 1 // reasoning ("thinking") text
	DeltaRefusal   DeltaKind = 2 // a refusal's text
	DeltaToolCall  DeltaKind = 3 // a fragment of a tool call's arguments (may be "")
)

// Delta is one typed piece of a stream.
type Delta struct {
	Kind DeltaKind
	// Choice is the chat choice it belongs to (n > 1); 0 for the other APIs.
	Choice int
	// CallIndex is a tool call's position among the choice's calls (chat),
	// its output item (Responses) or its content block (Messages); else 0.
	CallIndex int
	// ID and Name are the tool call's id and function name once known, else "".
	ID   string
	Name string
	// Text is the text or the argument fragment.
	Text string
}

// completionOf copies llmpool_response_completion (nil when NULL).
func completionOf(p *C.llmpool_response) json.RawMessage {
	s := C.llmpool_response_completion(p)
	if s == nil {
		return nil
	}
	return json.RawMessage(C.GoString(s))
}

// Completion is the answer as one JSON object in its API's non-streaming
// shape: a chat stream's assembled chat.completion (tool calls joined,
// reasoning fields, refusal, n choices), a Responses stream's final
// response, a Messages stream's final message (tool_use input parsed), a
// non-streamed call's body. nil when there is none (embeddings, no answer).
// A stream that failed or was stopped keeps what arrived.
func (r *Response) Completion() json.RawMessage {
	if r == nil {
		return nil
	}
	return r.completion
}

// submitReq is a submit function for a C call taking one request string.
func submitReq(req string, fn func(*C.llmpool_client, *C.char, C.uintptr_t, **C.llmpool_call) C.enum_llmpool_code) func(*C.llmpool_client, C.uintptr_t, **C.llmpool_call) C.enum_llmpool_code {
	return func(p *C.llmpool_client, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		creq := C.CString(req)
		defer C.free(unsafe.Pointer(creq))
		return fn(p, creq, h, call)
	}
}

// Responses sends POST {base_url}/responses (OpenAI's Responses API) with
// req; Text is the output text joined, Completion the response object.
// Otherwise like Chat (ctx cancels this call alone).
func (c *Client) Responses(ctx context.Context, req string) (*Response, error) {
	return c.async(ctx, nil, submitReq(req, func(p *C.llmpool_client, r *C.char, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		return C.go_responses_async(p, r, h, call)
	}))
}

// Messages sends POST {base_url}/messages (Anthropic's Messages API) with
// req (anthropic-version and the key as x-api-key or Bearer, see the
// options anthropic_version and anthropic_auth); Text is the text blocks
// joined, Completion the message. Otherwise like Chat.
func (c *Client) Messages(ctx context.Context, req string) (*Response, error) {
	return c.async(ctx, nil, submitReq(req, func(p *C.llmpool_client, r *C.char, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		return C.go_messages_async(p, r, h, call)
	}))
}

// eventStream runs an event-callback stream like ChatStream.
func (c *Client) eventStream(ctx context.Context, what string, fn func(delta, event string) bool, submit func(*C.llmpool_client, C.uintptr_t, **C.llmpool_call) C.enum_llmpool_code) (*Response, error) {
	if fn == nil {
		return nil, newError(CodeInvalidArgument, what+": fn is nil")
	}
	st := &streamState{fn: fn}
	if ctx != nil && ctx.Done() != nil {
		st.fn = func(delta, event string) bool { return ctx.Err() == nil && fn(delta, event) }
	}
	r, err := c.async(ctx, st, submit)
	if st.panicked != nil {
		panic(st.panicked)
	}
	return r, err
}

// ResponsesStream streams the Responses API ("stream": true is added),
// calling fn for every event in order with the event's output_text delta
// ("" for other events) and its raw JSON; otherwise like ChatStream. It
// ends at response.completed or response.incomplete; response.failed and
// error events fail with CodeProtocol.
func (c *Client) ResponsesStream(ctx context.Context, req string, fn func(delta, event string) bool) (*Response, error) {
	return c.eventStream(ctx, "ResponsesStream", fn, submitReq(req, func(p *C.llmpool_client, r *C.char, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		return C.go_responses_stream_async(p, r, h, call)
	}))
}

// MessagesStream streams the Messages API, calling fn with each
// text_delta's text (else "") and the event's JSON; otherwise like
// ChatStream. An error event (such as overloaded_error) fails with
// CodeProtocol.
func (c *Client) MessagesStream(ctx context.Context, req string, fn func(delta, event string) bool) (*Response, error) {
	return c.eventStream(ctx, "MessagesStream", fn, submitReq(req, func(p *C.llmpool_client, r *C.char, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		return C.go_messages_stream_async(p, r, h, call)
	}))
}

// StreamDeltas streams req on api, calling fn for each typed Delta in
// order (never concurrently, on the one goroutine that takes the events of
// every StreamDeltas from llmpool's queue in batches: no cgo callback per
// delta, no goroutine pinned in cgo; keep fn quick); return false
// to stop (the call then fails with CodeCancelled, and its Response keeps
// what arrived). When ctx is done the stream is cancelled within about
// 100 ms. The Response's Completion is the assembled answer. A panic in fn
// stops the stream and is raised again here once the call has ended.
func (c *Client) StreamDeltas(ctx context.Context, api API, req string, fn func(Delta) bool) (*Response, error) {
	if fn == nil {
		return nil, newError(CodeInvalidArgument, "StreamDeltas: fn is nil")
	}
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if err := startQueue(); err != nil {
		return nil, err
	}
	p, err := c.acquire()
	if err != nil {
		return nil, err
	}
	defer c.release()
	q := &queuedCall{fn: fn, done: make(chan *Response, 1)}
	if ctx != nil && ctx.Done() != nil {
		q.fn = func(d Delta) bool { return ctx.Err() == nil && fn(d) }
	}
	queueMu.Lock()
	nextTag++
	tag := nextTag
	queued[tag] = q
	queueMu.Unlock()
	creq := C.CString(req)
	var call *C.llmpool_call
	code := C.llmpool_stream_queued(p, C.int(api), creq, theQueue, C.uint64_t(tag), &call)
	C.free(unsafe.Pointer(creq))
	if code != C.LLMPOOL_OK {
		queueMu.Lock()
		delete(queued, tag)
		queueMu.Unlock()
		return nil, newError(int(code), "the request was refused before sending (invalid JSON or api, or a closed client)")
	}
	defer C.llmpool_call_free(call)
	queueMu.Lock()
	q.call = call
	stop := q.stop
	queueMu.Unlock()
	if stop {
		C.llmpool_call_cancel(call)
	}
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	var r *Response
	select {
	case r = <-q.done:
	case <-done:
		C.llmpool_call_cancel(call)
		r = <-q.done
	}
	if q.panicked != nil {
		panic(q.panicked)
	}
	if r == nil {
		return nil, newError(CodePanic, "llmpool returned no response")
	}
	// Deltas arrive in batches: the call may have ended before fn's stop
	// was seen. Stopped is stopped, as when the cancel came first.
	queueMu.Lock()
	stopped := q.stop
	queueMu.Unlock()
	if stopped && r.Code == CodeOK {
		r.Code = CodeCancelled
		r.ErrorText = "the stream was stopped by fn; no delta after that was delivered"
	}
	return r, r.Err()
}
