package llmpool

// Batch on the async C API: a few goroutines, each waiting in a select on
// one call at a time, so a batch pins no OS thread and its ctx cancels the
// items in flight. The semantics are those of the C batch
// (llmpool_chat_batch, src/batch.rs): the same default limit, results in
// request order, one response per item, progress on the calling goroutine.

/*
#include <stdint.h>
#include <stdlib.h>
#include "llmpool.h"

enum llmpool_code go_chat_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call);
*/
import "C"

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"unsafe"
)

// defaultBatchConcurrency is the C batch's limit when neither the batch
// nor the client's max_concurrency option sets one
// (DEFAULT_BATCH_CONCURRENCY in src/batch.rs).
const defaultBatchConcurrency = 16

// optionMaxConcurrency reads max_concurrency from the options JSON the C
// library accepted (0 when absent; only the JSON sets it, never the
// environment).
func optionMaxConcurrency(optionsJSON string) int {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(optionsJSON), &m) != nil {
		return 0
	}
	var n uint64
	if raw, ok := m["max_concurrency"]; !ok || json.Unmarshal(raw, &n) != nil {
		return 0
	}
	return int(n)
}

// batchConcurrency is effective_concurrency of src/batch.rs: max, or the
// client's max_concurrency, or 16; at most n (n > 0).
func (c *Client) batchConcurrency(max, n int) int {
	limit := max
	if limit == 0 {
		limit = c.maxConcurrency
	}
	if limit == 0 {
		limit = defaultBatchConcurrency
	}
	if limit > n {
		limit = n
	}
	return limit
}

// Batch sends the chat requests with at most maxConcurrency in flight (0:
// the client's max_concurrency option, else 16, as the C batch) and waits
// for all. The result has one Response per request, in request order,
// success or failure (see Response.Err); the error is the first failed
// item's in request order, nil when all succeeded. One item failing never
// fails the others; a request that is not a JSON object gets the
// CodeInvalidArgument response llmpool_chat gives it, without sending.
//
// Every item runs on llmpool's own threads (its async C API), like Chat:
// the goroutines waiting on them pin no OS thread. When ctx (may be nil)
// is done, the items in flight are cancelled (within about 100 ms; their
// responses have CodeCancelled and their Info), the items not yet sent
// are never sent and get a CodeCancelled Response whose Info has
// "attempts": 0, and Batch returns.
func (c *Client) Batch(ctx context.Context, reqs []string, maxConcurrency int) ([]*Response, error) {
	return c.BatchProgress(ctx, reqs, maxConcurrency, nil)
}

// BatchProgress is Batch with progress(done, total) called after each
// finished item, as the C batch calls its progress callback: on the
// calling goroutine (never on a worker goroutine or a llmpool thread, so
// never concurrently with itself), in completion order, done counting up
// from 1; when every item ran the last call is (total, total). Items never
// sent because ctx ended the batch are not counted. Batch waits for the
// next completion while progress runs, so keep it quick. A panic in
// progress cancels the items in flight, waits for their ends (no call
// outlives the batch) and then propagates.
func (c *Client) BatchProgress(ctx context.Context, reqs []string, maxConcurrency int, progress func(done, total int)) ([]*Response, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if maxConcurrency < 0 {
		return nil, newError(CodeInvalidArgument, "Batch: maxConcurrency < 0")
	}
	p, err := c.acquire()
	if err != nil {
		return nil, err
	}
	defer c.release()
	total := len(reqs)
	if total == 0 {
		return []*Response{}, nil
	}
	parent := ctx
	if parent == nil {
		parent = context.Background()
	}
	bctx, stop := context.WithCancel(parent)
	type finished struct {
		i   int
		r   *Response
		ran bool // false: never sent, ctx ended the batch first
	}
	// Room for every item, so that a worker never waits on the collector
	// (which may be running progress, or gone after a panic in it).
	results := make(chan finished, total)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := c.batchConcurrency(maxConcurrency, total); w > 0; w-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				r, ran := batchItem(bctx, p, reqs[i])
				results <- finished{i, r, ran}
			}
		}()
	}
	// On every return, and when progress panics: cancel what is still in
	// flight and wait for it, so no call outlives the batch.
	defer func() {
		stop()
		wg.Wait()
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	res := make([]*Response, total)
	done := 0
	for f := range results {
		res[f.i] = f.r
		if f.ran {
			done++
			if progress != nil {
				progress(done, total)
			}
		}
	}
	var first error
	for i, r := range res {
		if r == nil {
			r = notSent(bctx)
			res[i] = r
		}
		if err := r.Err(); err != nil && first == nil {
			first = err
		}
	}
	return res, first
}

// batchItem runs one chat call of a batch on the async path; false when
// ctx ended before it was sent.
func batchItem(ctx context.Context, p *C.llmpool_client, req string) (*Response, bool) {
	if ctx.Err() != nil {
		return notSent(ctx), false
	}
	creq := C.CString(req)
	defer C.free(unsafe.Pointer(creq))
	r, code := await(ctx, p, nil, takeResponse, func(p *C.llmpool_client, h C.uintptr_t, call **C.llmpool_call) C.enum_llmpool_code {
		return C.go_chat_async(p, creq, h, call)
	})
	if r != nil {
		return r, true
	}
	if code == C.LLMPOOL_INVALID_ARGUMENT {
		// Not a JSON object (or not UTF-8): llmpool_chat refuses it the
		// same way, before any I/O, and its response says why, which is
		// what the C batch gives such an item.
		var out *C.llmpool_response
		C.llmpool_chat(p, creq, &out)
		if r := takeResponse(out); r != nil {
			return r, true
		}
	}
	n := int(code)
	if code == C.LLMPOOL_OK {
		n = CodePanic
	}
	return &Response{Code: n, ErrorText: "llmpool returned no response", Info: json.RawMessage(notSentInfo)}, true
}

// notSentInfo is the Info of a response no attempt was made for (the
// shape of the C library's own, e.g. for an invalid request).
const notSentInfo = `{"attempts":0,"retries":0,"connection_reused":false,"connections_opened":0,"latency_ms":0,"status":0,"request_id":null,"model":null,"usage":null}`

// notSent is the response of a batch item that ctx stopped before it was
// sent.
func notSent(ctx context.Context) *Response {
	why := "batch stopped"
	if err := ctx.Err(); err != nil {
		why = err.Error()
	}
	return &Response{
		Code:      CodeCancelled,
		ErrorText: "context: " + why + " (batch item never sent)",
		Info:      json.RawMessage(notSentInfo),
	}
}
