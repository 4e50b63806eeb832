// N concurrent chat streams: llmpool's StreamDeltas or net/http (SSE split,
// json.Unmarshal per event), against llmpool-testserver --port 0; prints
// CPU (getrusage, llmpool's threads included), max RSS and wall time. See
// docs/benchmark.md.
//
//	go run ./streams (llmpool|nethttp) N http://127.0.0.1:PORT/v1
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	llmpool "github.com/llmpool/llmpool-go"
)

func main() {
	mode, url := os.Args[1], os.Args[3]
	n, _ := strconv.Atoi(os.Args[2])
	words := make([]string, 40)
	for i := range words {
		words[i] = "w" + strconv.Itoa(i)
	}
	content := strings.Join(words, " ")
	req := `{"model":"m","stream":true,"x_test_stream_delay_ms":100,"messages":[{"role":"user","content":"` + content + `"}]}`
	want := "Echo: " + content
	var ok, bad int
	var mu sync.Mutex
	var wg sync.WaitGroup
	t0 := time.Now()
	var c *llmpool.Client
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	if mode == "llmpool" {
		c, _ = llmpool.NewClient(`{"base_url":"` + url + `","api_key":"sk-x"}`)
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var text strings.Builder
			if mode == "llmpool" {
				_, err := c.StreamDeltas(context.Background(), llmpool.APIChat, req, func(d llmpool.Delta) bool { text.WriteString(d.Text); return true })
				if err != nil {
					mu.Lock()
					bad++
					mu.Unlock()
					return
				}
			} else {
				hr, _ := http.NewRequest("POST", url+"/chat/completions", bytes.NewBufferString(req))
				hr.Header.Set("content-type", "application/json")
				resp, err := hc.Do(hr)
				if err != nil {
					mu.Lock()
					bad++
					mu.Unlock()
					return
				}
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					line := sc.Text()
					if !strings.HasPrefix(line, "data: ") || line == "data: [DONE]" {
						continue
					}
					var ev struct {
						Choices []struct{ Delta struct{ Content string } }
					}
					if json.Unmarshal([]byte(line[6:]), &ev) == nil && len(ev.Choices) > 0 {
						text.WriteString(ev.Choices[0].Delta.Content)
					}
				}
				resp.Body.Close()
			}
			mu.Lock()
			if text.String() == want {
				ok++
			} else {
				bad++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	fmt.Printf("%s N=%d ok=%d bad=%d wall=%.2fs cpu=%.2fs maxrss=%dMiB\n", mode, n, ok, bad, time.Since(t0).Seconds(), cpu, ru.Maxrss/1024)
}
