package llmpool_test

// The agent-building calls (agents.go) against the test server: typed
// deltas of the three streaming APIs, the assembled completion, the
// Responses and Messages APIs, stopping and cancelling a stream.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llmpool/llmpool-go"
)

// fixture is a chat request the test server answers with the stream
// fixture name (extra: more top-level fields, e.g. `"x":1`).
func fixture(name, extra string) string {
	s := `{"model":"test-model","messages":[{"role":"user","content":"go"}],"x_test_fixture":"` + name + `"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

const (
	responsesTool = `{"model":"test-model","input":"hello there","x_test_tool":true}`
	messagesReq   = `{"model":"claude-sonnet-4.5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]`
)

// collect streams req on api and returns the response and every delta.
func collect(t *testing.T, c *llmpool.Client, api llmpool.API, req string) (*llmpool.Response, []llmpool.Delta, error) {
	t.Helper()
	var seen []llmpool.Delta
	r, err := c.StreamDeltas(context.Background(), api, req, func(d llmpool.Delta) bool {
		seen = append(seen, d)
		return true
	})
	return r, seen, err
}

func ofKind(ds []llmpool.Delta, k llmpool.DeltaKind) (out []llmpool.Delta, text string) {
	for _, d := range ds {
		if d.Kind == k {
			out = append(out, d)
			text += d.Text
		}
	}
	return out, text
}

// completion decodes r.Completion() into a generic value.
func completion(t *testing.T, r *llmpool.Response) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.Completion(), &v); err != nil {
		t.Fatalf("completion %q: %v", r.Completion(), err)
	}
	return v
}

// at walks a decoded JSON value by object keys and array indexes.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func TestStreamedToolCallTypedDeltasAndCompletion(t *testing.T) {
	c := newClient(t, "")
	r, seen, err := collect(t, c, llmpool.APIChat, fixture("tool_call", ""))
	if err != nil {
		t.Fatal(err)
	}
	tool, args := ofKind(seen, llmpool.DeltaToolCall)
	if len(tool) != 3 || args != `{"city": "Paris"}` {
		t.Fatalf("tool deltas %+v", tool)
	}
	for _, d := range tool {
		if d.ID != "call_1" || d.Name != "get_weather" || d.Choice != 0 || d.CallIndex != 0 {
			t.Fatalf("delta %+v", d)
		}
	}
	done := completion(t, r)
	if done["object"] != "chat.completion" || at(done, "choices", 0, "finish_reason") != "tool_calls" {
		t.Fatalf("completion %s", r.Completion())
	}
	call := at(done, "choices", 0, "message", "tool_calls", 0)
	var got map[string]string
	_ = json.Unmarshal([]byte(at(call, "function", "arguments").(string)), &got)
	if at(call, "id") != "call_1" || at(call, "function", "name") != "get_weather" || got["city"] != "Paris" {
		t.Fatalf("tool call %v", call)
	}
}

func TestReasoningRefusalTwoChoicesAndBadArguments(t *testing.T) {
	c := newClient(t, "")
	_, seen, err := collect(t, c, llmpool.APIChat, fixture("reasoning", ""))
	if err != nil {
		t.Fatal(err)
	}
	if seen[0] != (llmpool.Delta{Kind: llmpool.DeltaReasoning, Text: "Let me "}) {
		t.Fatalf("first delta %+v", seen[0])
	}
	if _, text := ofKind(seen, llmpool.DeltaContent); text != "Answer." {
		t.Fatalf("content %q", text)
	}
	_, seen, _ = collect(t, c, llmpool.APIChat, fixture("refusal", ""))
	if _, text := ofKind(seen, llmpool.DeltaRefusal); text != "I can't help with that." {
		t.Fatalf("refusal %q", text)
	}
	r, seen, _ := collect(t, c, llmpool.APIChat, fixture("two_choices", ""))
	b := ""
	for _, d := range seen {
		if d.Choice == 1 {
			b += d.Text
		}
	}
	if b != "B1 B2" || r.Text != "A1 A2" || at(completion(t, r), "choices", 1, "message", "content") != "B1 B2" {
		t.Fatalf("choice 1 %q, text %q, completion %s", b, r.Text, r.Completion())
	}
	r, _, err = collect(t, c, llmpool.APIChat, fixture("bad_arguments", ""))
	if err != nil || !strings.Contains(string(r.Info), `"invalid_tool_arguments"`) {
		t.Fatalf("info %s: %v", r.Info, err)
	}
}

func TestErrorIn200StreamKeepsThePartialCompletion(t *testing.T) {
	c := newClient(t, "")
	r, _, err := collect(t, c, llmpool.APIChat, fixture("error_in_200", ""))
	if e := asError(t, err); e.Code != llmpool.CodeProtocol || r == nil {
		t.Fatalf("got %+v, response %v", e, r)
	}
	done := completion(t, r)
	if at(done, "choices", 0, "message", "content") != "Partial " || at(done, "choices", 0, "finish_reason") != nil {
		t.Fatalf("completion %s", r.Completion())
	}
}

func TestStreamDeltasStopCancelAndPanic(t *testing.T) {
	c := newClient(t, "")
	// false from fn stops the stream; what arrived is kept.
	r, err := c.StreamDeltas(context.Background(), llmpool.APIChat, fixture("tool_call", ""), func(llmpool.Delta) bool { return false })
	if e := asError(t, err); e.Code != llmpool.CodeCancelled {
		t.Fatalf("got %+v", e)
	}
	if at(completion(t, r), "choices", 0, "message", "tool_calls", 0, "function", "name") != "get_weather" {
		t.Fatalf("completion %s", r.Completion())
	}
	// A done ctx cancels a stream whose next chunk is 500 ms away.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = c.StreamDeltas(ctx, llmpool.APIChat, fixture("tool_call", `"x_test_stream_delay_ms":500`), func(llmpool.Delta) bool { return true })
	if e := asError(t, err); e.Code != llmpool.CodeCancelled || time.Since(t0) > 400*time.Millisecond {
		t.Fatalf("got %+v after %v", e, time.Since(t0))
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want boom", p)
			}
		}()
		_, _ = c.StreamDeltas(context.Background(), llmpool.APIChat, fixture("tool_call", ""), func(llmpool.Delta) bool { panic("boom") })
		t.Fatal("the panic was swallowed")
	}()
	if _, err := c.StreamDeltas(nil, llmpool.API(7), fixture("tool_call", ""), func(llmpool.Delta) bool { return true }); asError(t, err).Code != llmpool.CodeInvalidArgument {
		t.Fatalf("api 7: %v", err)
	}
}

func TestResponsesAPIStreamedAndNot(t *testing.T) {
	c := newClient(t, "")
	r, err := c.Responses(context.Background(), `{"model":"test-model","input":"hello there"}`)
	if err != nil || r.Text != "Echo: hello there" || completion(t, r)["object"] != "response" {
		t.Fatalf("Responses: %v %+v", err, r)
	}
	r, seen, err := collect(t, c, llmpool.APIResponses, responsesTool)
	if err != nil {
		t.Fatal(err)
	}
	if _, text := ofKind(seen, llmpool.DeltaContent); text != "Echo: hello there" {
		t.Fatalf("content %q", text)
	}
	tool, _ := ofKind(seen, llmpool.DeltaToolCall)
	if len(tool) != 2 || tool[0].CallIndex != 1 || tool[0].ID != "call_1" || tool[0].Name != "get_weather" {
		t.Fatalf("tool deltas %+v", tool)
	}
	done := completion(t, r)
	if done["status"] != "completed" || at(done, "output", 1, "arguments") != `{"city": "Paris"}` {
		t.Fatalf("completion %s", r.Completion())
	}
	var joined string
	r, err = c.ResponsesStream(context.Background(), responsesTool, func(delta, event string) bool {
		joined += delta
		return strings.HasPrefix(event, "{")
	})
	if err != nil || joined != "Echo: hello there" || r.Completion() == nil {
		t.Fatalf("ResponsesStream: %v %q", err, joined)
	}
}

func TestMessagesAPIToolUseAndOverloaded(t *testing.T) {
	c := newClient(t, "")
	r, err := c.Messages(context.Background(), messagesReq+"}")
	if err != nil || r.Text != "Echo: hi" || completion(t, r)["stop_reason"] != "end_turn" {
		t.Fatalf("Messages: %v %+v", err, r)
	}
	r, seen, err := collect(t, c, llmpool.APIMessages, messagesReq+`,"x_test_tool":true}`)
	if err != nil {
		t.Fatal(err)
	}
	tool, _ := ofKind(seen, llmpool.DeltaToolCall)
	if len(tool) == 0 || tool[0].Name != "get_weather" {
		t.Fatalf("tool deltas %+v", tool)
	}
	done := completion(t, r)
	if at(done, "content", 1, "input", "city") != "Paris" || done["stop_reason"] != "tool_use" {
		t.Fatalf("completion %s", r.Completion())
	}
	var joined string
	r, err = c.MessagesStream(context.Background(), messagesReq+`,"x_test_overloaded":true}`, func(delta, _ string) bool {
		joined += delta
		return true
	})
	if e := asError(t, err); e.Code != llmpool.CodeProtocol || !strings.Contains(e.Message, "Overloaded") {
		t.Fatalf("got %+v", e)
	}
	if joined != "Echo: hi" || r.Text != "Echo: hi" {
		t.Fatalf("joined %q text %q", joined, r.Text)
	}
}

func TestCompletionOfPlainCalls(t *testing.T) {
	c := newClient(t, "")
	r, err := c.Chat(context.Background(), chatReq("hi"))
	if err != nil || string(r.Completion()) != r.Body {
		t.Fatalf("chat completion %q vs body %q: %v", r.Completion(), r.Body, err)
	}
	e, err := c.Embeddings(context.Background(), `{"model":"m","input":"x"}`)
	if err != nil || e.Completion() != nil {
		t.Fatalf("embeddings completion %q: %v", e.Completion(), err)
	}
}

func TestFiveHundredStreamDeltasAtOnce(t *testing.T) {
	c := newClient(t, "")
	const n = 500
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			want := fmt.Sprintf("Echo: %d a b c", i)
			req := fmt.Sprintf(`{"model":"m","x_test_stream_delay_ms":30,"messages":[{"role":"user","content":"%d a b c"}]}`, i)
			var text strings.Builder
			r, err := c.StreamDeltas(context.Background(), llmpool.APIChat, req, func(d llmpool.Delta) bool {
				text.WriteString(d.Text)
				return true
			})
			switch {
			case err != nil:
				errs <- err
			case text.String() != want || r.Text != want:
				errs <- fmt.Errorf("stream %d: got %q / %q", i, text.String(), r.Text)
			default:
				errs <- nil
			}
		}(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
