// Package cgosleep is a test helper of package llmpool (internal: nothing
// outside it can import it): a cgo call that blocks in C, the control for
// the tests that count goroutines waiting inside cgo. Go allows no cgo in
// _test.go files, hence a package of its own.
package cgosleep

/*
#include <unistd.h>
*/
import "C"

// Sleep blocks the calling goroutine in C's usleep for ms milliseconds,
// holding its OS thread as any blocking cgo call does.
func Sleep(ms int) {
	// In steps under 1 s: POSIX allows usleep to refuse 1,000,000 us or more.
	for ms > 0 {
		step := ms
		if step > 500 {
			step = 500
		}
		C.usleep(C.useconds_t(step * 1000))
		ms -= step
	}
}
