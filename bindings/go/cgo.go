package llmpool

// cgo finds the header and the library through pkg-config (llmpool.pc, as
// scripts/install.sh installs it or the C tarball ships it):
//
//	PKG_CONFIG_PATH=/opt/llmpool/lib/pkgconfig LD_LIBRARY_PATH=/opt/llmpool/lib go test ./...
//
// The repository's tests (cargo test --test go) write a llmpool.pc for the
// build tree and point PKG_CONFIG_PATH at it.

/*
#cgo pkg-config: llmpool
#include <stdint.h>
#include <stdlib.h>
#include "llmpool.h"

// Go exports (callbacks.go). Handles travel as uintptr_t and become the
// C void* userdata only here, so Go never converts an integer to a pointer.
extern int llmpoolGoStream(uintptr_t h, char *delta, size_t delta_len, char *event, size_t event_len);
extern int llmpoolGoKeyProvider(uintptr_t h, char *buf, size_t buf_len);
extern void llmpoolGoLog(uintptr_t h, int level, char *message, size_t len);

static void llmpool_log_shim(void *ud, int level, const char *message, size_t len) {
	llmpoolGoLog((uintptr_t)ud, level, (char *)message, len);
}

enum llmpool_code go_set_log_callback(llmpool_client *c, int min_level, uintptr_t h) {
	return llmpool_client_set_log_callback(c, min_level, h ? llmpool_log_shim : NULL, (void *)h);
}
extern void llmpoolGoDone(uintptr_t h, llmpool_response *r);

static int llmpool_stream_shim(void *ud, const char *d, size_t dl, const char *e, size_t el) {
	return llmpoolGoStream((uintptr_t)ud, (char *)d, dl, (char *)e, el);
}

static int llmpool_key_shim(void *ud, char *buf, size_t buf_len) {
	return llmpoolGoKeyProvider((uintptr_t)ud, buf, buf_len);
}

static void llmpool_done_shim(void *ud, llmpool_response *r) {
	llmpoolGoDone((uintptr_t)ud, r);
}

// Async submits: h names the Go call state; done (and a stream's events)
// run on llmpool's threads and reach Go through the shims above.
enum llmpool_code go_chat_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call) {
	return llmpool_chat_async(c, req, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_embeddings_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call) {
	return llmpool_embeddings_async(c, req, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_request_async(llmpool_client *c, const char *m, const char *p, const char *b, uintptr_t h,
                                   llmpool_call **call) {
	return llmpool_request_async(c, m, p, b, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_request_raw_async(llmpool_client *c, const char *m, const char *p, const char *ct,
                                       const uint8_t *b, size_t n, uintptr_t h, llmpool_call **call) {
	return llmpool_request_raw_async(c, m, p, ct, b, n, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_client_warm_async(llmpool_client *c, size_t n, uintptr_t h, llmpool_call **call) {
	return llmpool_client_warm_async(c, n, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_chat_stream_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call) {
	return llmpool_chat_stream_async(c, req, llmpool_stream_shim, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_responses_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call) {
	return llmpool_responses_async(c, req, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_messages_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call) {
	return llmpool_messages_async(c, req, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_responses_stream_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call) {
	return llmpool_responses_stream_async(c, req, llmpool_stream_shim, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_messages_stream_async(llmpool_client *c, const char *req, uintptr_t h, llmpool_call **call) {
	return llmpool_messages_stream_async(c, req, llmpool_stream_shim, llmpool_done_shim, (void *)h, call);
}

// The delta's fields travel one by one: Go never reads the C struct.
extern int llmpoolGoDelta(uintptr_t h, int kind, uint32_t choice, uint32_t call_index, char *id, char *name,
                          char *text, size_t text_len);

static int llmpool_delta_shim(void *ud, const llmpool_delta *d) {
	return llmpoolGoDelta((uintptr_t)ud, (int)d->kind, d->choice, d->call_index, (char *)d->id, (char *)d->name,
	                      (char *)d->text, d->text_len);
}

enum llmpool_code go_stream_deltas_async(llmpool_client *c, int api, const char *req, uintptr_t h,
                                         llmpool_call **call) {
	return llmpool_stream_deltas_async(c, api, req, llmpool_delta_shim, llmpool_done_shim, (void *)h, call);
}

enum llmpool_code go_set_key_provider(llmpool_client *c, uintptr_t h) {
	return llmpool_client_set_key_provider(c, h ? llmpool_key_shim : NULL, (void *)h);
}
*/
import "C"
