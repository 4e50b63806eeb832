package llmpool

/*
#include "llmpool.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Embeddings is an embeddings answer's vectors: Data holds Count rows of
// Dim float32s, row-major, row i being the vector whose "index" is i.
type Embeddings struct {
	Data  []float32
	Count int
	Dim   int
}

// Row is vector i, a slice of Data (no copy). It panics when i is out of
// range, like any slice index.
func (e *Embeddings) Row(i int) []float32 {
	if i < 0 || i >= e.Count {
		panic("llmpool: Embeddings.Row index out of range")
	}
	return e.Data[i*e.Dim : (i+1)*e.Dim : (i+1)*e.Dim]
}

// Rows is every vector as a slice of Data (no copy of the floats).
func (e *Embeddings) Rows() [][]float32 {
	rows := make([][]float32, e.Count)
	for i := range rows {
		rows[i] = e.Row(i)
	}
	return rows
}

// owned holds the C response of an Embeddings answer until its vectors
// are copied out (or the garbage collector frees it).
type owned struct {
	mu  sync.Mutex
	p   *C.llmpool_response
	vec *Embeddings
}

func (o *owned) free() {
	if o.p != nil {
		C.llmpool_response_free(o.p)
		o.p = nil
	}
}

// keepResponse copies a C response like takeResponse but keeps it, owned by
// the Response, for Embeddings.
func keepResponse(p *C.llmpool_response) *Response {
	if p == nil {
		return nil
	}
	r := copyResponse(p)
	o := &owned{p: p}
	runtime.SetFinalizer(o, func(o *owned) { o.free() })
	r.owned = o
	return r
}

// Embeddings gives the vectors of an Embeddings answer (float arrays or
// base64 alike), decoded by llmpool on first use and copied once into Go
// memory (then the C response is freed); later calls return the same
// value. Safe for concurrent use. Errors are *Error: CodeProtocol for
// ragged or malformed vectors, CodeInvalidArgument for a response that
// is not an embeddings answer (only Client.Embeddings responses carry
// vectors).
func (r *Response) Embeddings() (*Embeddings, error) {
	if r == nil || r.owned == nil {
		return nil, newError(CodeInvalidArgument, "not an embeddings answer: only Client.Embeddings responses carry vectors")
	}
	o := r.owned
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.vec != nil {
		return o.vec, nil
	}
	var data *C.float
	var count, dim C.size_t
	code := C.llmpool_response_embeddings(o.p, &data, &count, &dim)
	if code != C.LLMPOOL_OK {
		e := newError(int(code), C.GoString(C.llmpool_response_embeddings_error(o.p)))
		e.Status = r.Status
		return nil, e
	}
	n := int(count) * int(dim)
	vec := &Embeddings{Data: make([]float32, n), Count: int(count), Dim: int(dim)}
	if n > 0 {
		copy(vec.Data, unsafe.Slice((*float32)(unsafe.Pointer(data)), n))
	}
	o.vec = vec
	o.free()
	return vec, nil
}
