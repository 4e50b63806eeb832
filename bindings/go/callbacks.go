package llmpool

// Go functions that C calls back. The userdata C sees is a runtime/cgo
// Handle (an integer naming a Go value), never a Go pointer. A panic in a
// user callback is recovered here (it must not unwind through C frames),
// the C call is told to stop where it can, and the panic is raised again
// on the calling goroutine once the C call has returned.

/*
#include <stddef.h>
#include <stdint.h>
#include "llmpool.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// streamState is the Go value behind a streaming call's handle.
type streamState struct {
	fn       func(delta, event string) bool
	deltaFn  func(Delta) bool // typed-delta streams (agents.go) instead of fn
	panicked any
}

// asyncState is the Go value behind an async call's handle: done sends
// the copied response on ch (buffered, so llmpool's thread never waits).
type asyncState struct {
	ch     chan *Response
	stream *streamState
	take   func(*C.llmpool_response) *Response // takeResponse or keepResponse
}

// keyState is the Go value behind a key provider's handle.
type keyState struct {
	fn func() (string, bool)
}

//export llmpoolGoDone
func llmpoolGoDone(h C.uintptr_t, r *C.llmpool_response) {
	st := cgo.Handle(h).Value().(*asyncState)
	st.ch <- st.take(r)
}

//export llmpoolGoStream
func llmpoolGoStream(h C.uintptr_t, delta *C.char, deltaLen C.size_t, event *C.char, eventLen C.size_t) (ret C.int) {
	st := cgo.Handle(h).Value().(*asyncState).stream
	if st.panicked != nil {
		return 1
	}
	d := C.GoStringN(delta, C.int(deltaLen))
	e := C.GoStringN(event, C.int(eventLen))
	defer func() {
		if p := recover(); p != nil {
			st.panicked = p
			ret = 1
		}
	}()
	if st.fn(d, e) {
		return 0
	}
	return 1
}

//export llmpoolGoDelta
func llmpoolGoDelta(h C.uintptr_t, kind C.int, choice, callIndex C.uint32_t, id, name, text *C.char, textLen C.size_t) (ret C.int) {
	st := cgo.Handle(h).Value().(*asyncState).stream
	if st.panicked != nil {
		return 1
	}
	d := Delta{Kind: DeltaKind(kind), Choice: int(choice), CallIndex: int(callIndex),
		Text: C.GoStringN(text, C.int(textLen))}
	if id != nil {
		d.ID = C.GoString(id)
	}
	if name != nil {
		d.Name = C.GoString(name)
	}
	defer func() {
		if p := recover(); p != nil {
			st.panicked = p
			ret = 1
		}
	}()
	if st.deltaFn(d) {
		return 0
	}
	return 1
}

//export llmpoolGoKeyProvider
func llmpoolGoKeyProvider(h C.uintptr_t, buf *C.char, bufLen C.size_t) (ret C.int) {
	st := cgo.Handle(h).Value().(*keyState)
	defer func() {
		// A panicking provider means "no new key"; the call then fails
		// with the 401 it got.
		if recover() != nil {
			ret = 1
		}
	}()
	key, ok := st.fn()
	if !ok || bufLen == 0 || len(key)+1 > int(bufLen) {
		return 1
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(bufLen))
	copy(dst, key)
	dst[len(key)] = 0
	return 0
}

// logState is the Go value behind a log callback's handle.
type logState struct {
	fn func(level LogLevel, line string)
}

//export llmpoolGoLog
func llmpoolGoLog(h C.uintptr_t, level C.int, msg *C.char, n C.size_t) {
	st := cgo.Handle(h).Value().(*logState)
	// A panicking log function loses that line; it never unwinds into C.
	defer func() { _ = recover() }()
	st.fn(LogLevel(level), C.GoStringN(msg, C.int(n)))
}
