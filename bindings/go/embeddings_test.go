package llmpool_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/llmpool/llmpool-go"
)

var embRows = func() [][]float32 {
	rows := make([][]float32, 4)
	for r := range rows {
		for d := 0; d < 5; d++ {
			rows[r] = append(rows[r], float32(r*10+d)/8-3)
		}
	}
	return rows
}()

func b64Floats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// embeddingsAnswer lists rows in `order`, each encoded as floats or base64.
func embeddingsAnswer(rows [][]float32, b64 bool, order []int) string {
	data := []map[string]any{}
	for _, i := range order {
		var emb any = rows[i]
		if b64 {
			emb = b64Floats(rows[i])
		}
		data = append(data, map[string]any{"object": "embedding", "index": i, "embedding": emb})
	}
	b, _ := json.Marshal(map[string]any{"object": "list", "data": data, "model": "emb"})
	return string(b)
}

func serveBody(t *testing.T, body string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"type": "status", "code": 200, "body": body})
	pushFaults(t, string(b))
}

const embReq = `{"model":"emb","input":["a","b"]}`

func TestEmbeddingsAsFloat32InIndexOrder(t *testing.T) {
	c := newClient(t, `"max_retries": 0`)
	for _, b64 := range []bool{false, true} {
		serveBody(t, embeddingsAnswer(embRows, b64, []int{2, 0, 3, 1}))
		r, err := c.Embeddings(context.Background(), embReq)
		if err != nil {
			t.Fatalf("Embeddings: %v", err)
		}
		// Concurrent first use: one decode, one result.
		var wg sync.WaitGroup
		got := make([]*llmpool.Embeddings, 4)
		for i := range got {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				e, err := r.Embeddings()
				if err != nil {
					t.Errorf("Embeddings(): %v", err)
				}
				got[i] = e
			}(i)
		}
		wg.Wait()
		e := got[0]
		for _, g := range got[1:] {
			if g != e {
				t.Fatalf("b64=%v: goroutines got different matrices", b64)
			}
		}
		if e.Count != 4 || e.Dim != 5 || len(e.Data) != 20 {
			t.Fatalf("b64=%v: %d x %d (%d floats)", b64, e.Count, e.Dim, len(e.Data))
		}
		for i, row := range e.Rows() {
			for d, v := range row {
				if v != embRows[i][d] {
					t.Fatalf("b64=%v: [%d][%d] = %v, want %v", b64, i, d, v, embRows[i][d])
				}
			}
		}
		if &e.Row(1)[0] != &e.Data[5] {
			t.Fatal("Row is not a view of Data")
		}
	}
}

func TestEmbeddingsErrors(t *testing.T) {
	c := newClient(t, `"max_retries": 0`)
	ragged := [][]float32{embRows[0], embRows[1][:4]}
	for _, b64 := range []bool{false, true} {
		serveBody(t, embeddingsAnswer(ragged, b64, []int{0, 1}))
		r, err := c.Embeddings(context.Background(), embReq)
		if err != nil {
			t.Fatalf("Embeddings: %v", err)
		}
		_, err = r.Embeddings()
		if e := asError(t, err); e.Code != llmpool.CodeProtocol || !strings.Contains(e.Message, "ragged rows") {
			t.Fatalf("b64=%v: %v", b64, err)
		}
	}
	chat, err := c.Chat(context.Background(), chatReq("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chat.Embeddings(); asError(t, err).Code != llmpool.CodeInvalidArgument {
		t.Fatalf("chat answer: %v", err)
	}
	serveBody(t, `{"choices":[{"message":{"content":"x"}}]}`)
	r, err := c.Embeddings(context.Background(), embReq)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Embeddings()
	if e := asError(t, err); e.Code != llmpool.CodeInvalidArgument || !strings.Contains(e.Message, "not an embeddings answer") {
		t.Fatalf("non-embeddings answer: %v", err)
	}
}
