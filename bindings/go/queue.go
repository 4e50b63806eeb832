package llmpool

// Typed-delta streams (StreamDeltas) hand their events over through one
// process-wide llmpool_queue (llmpool_stream_queued) instead of a cgo
// callback from llmpool's threads per delta: one goroutine takes whole
// batches (llmpool_queue_take) and waits for the queue's fd through Go's
// netpoller, so no goroutine is ever pinned in cgo waiting for events.

/*
#include <stdlib.h>
#include "llmpool.h"
*/
import "C"

import (
	"os"
	"sync"
	"syscall"
	"unsafe"
)

const takeMax = 256

// queuedCall is one stream in flight on the queue.
type queuedCall struct {
	fn       func(Delta) bool
	done     chan *Response // buffered: the drain goroutine never waits
	call     *C.llmpool_call
	stop     bool // fn said stop (or panicked): cancel once call is known
	panicked any
}

var (
	queueOnce sync.Once
	queueErr  error
	theQueue  *C.llmpool_queue
	queueMu   sync.Mutex
	queued    = map[uint64]*queuedCall{}
	nextTag   uint64
)

// startQueue creates the queue and its drain goroutine, once.
func startQueue() error {
	queueOnce.Do(func() {
		if code := C.llmpool_queue_new(&theQueue); code != C.LLMPOOL_OK {
			queueErr = newError(int(code), "llmpool_queue_new failed")
			return
		}
		// A duplicate of the fd, non-blocking, for the netpoller (the
		// queue keeps its own; closing this one never closes that).
		fd, err := syscall.Dup(int(C.llmpool_queue_fd(theQueue)))
		if err == nil {
			err = syscall.SetNonblock(fd, true)
		}
		if err != nil {
			queueErr = newError(CodeIO, "llmpool queue fd: "+err.Error())
			return
		}
		rc, err := os.NewFile(uintptr(fd), "llmpool-queue").SyscallConn()
		if err != nil {
			queueErr = newError(CodeIO, "llmpool queue fd: "+err.Error())
			return
		}
		go drainLoop(rc)
	})
	return queueErr
}

func drainLoop(rc syscall.RawConn) {
	buf := (*C.llmpool_event)(C.malloc(C.size_t(takeMax) * C.size_t(unsafe.Sizeof(C.llmpool_event{}))))
	events := unsafe.Slice(buf, takeMax)
	for {
		// Read calls the func until it returns true, waiting for the fd
		// to become readable between calls; the fd is readable exactly
		// while events wait, and a push into an empty queue is a new edge.
		_ = rc.Read(func(uintptr) bool { return drainOnce(events) })
	}
}

// drainOnce takes and dispatches events until none waits; false when
// there were none at all (then wait for the fd).
func drainOnce(events []C.llmpool_event) bool {
	any := false
	for {
		n := int(C.llmpool_queue_take(theQueue, &events[0], C.size_t(len(events))))
		if n == 0 {
			return any
		}
		any = true
		for i := 0; i < n; i++ {
			dispatch(&events[i])
		}
	}
}

func dispatch(ev *C.llmpool_event) {
	tag := uint64(ev.tag)
	queueMu.Lock()
	q := queued[tag]
	if ev.kind == C.LLMPOOL_EVENT_DONE {
		delete(queued, tag)
	}
	queueMu.Unlock()
	if ev.kind == C.LLMPOOL_EVENT_DONE {
		r := takeResponse((*C.llmpool_response)(ev.response))
		if q != nil {
			q.done <- r
		}
		return
	}
	if q == nil || q.stop {
		return
	}
	d := &ev.delta
	delta := Delta{Kind: DeltaKind(d.kind), Choice: int(d.choice), CallIndex: int(d.call_index),
		Text: C.GoStringN(d.text, C.int(d.text_len))}
	if d.id != nil {
		delta.ID = C.GoString(d.id)
	}
	if d.name != nil {
		delta.Name = C.GoString(d.name)
	}
	if !callFn(q, delta) {
		queueMu.Lock()
		q.stop = true
		call := q.call
		queueMu.Unlock()
		if call != nil {
			C.llmpool_call_cancel(call)
		}
	}
}

// callFn runs the user's fn; a panic stops the stream and is kept.
func callFn(q *queuedCall, d Delta) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			q.panicked = p
			ok = false
		}
	}()
	return q.fn(d)
}
