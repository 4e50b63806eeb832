module llmpool-example

go 1.19

require github.com/llmpool/llmpool-go v0.1.0

// The binding in this repository; an application outside it drops this
// line (or points it at its own checkout).
replace github.com/llmpool/llmpool-go => ../../bindings/go
