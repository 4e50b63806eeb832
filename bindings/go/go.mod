module github.com/llmpool/llmpool-go

go 1.19
