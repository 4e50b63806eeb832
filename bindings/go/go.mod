module llmpool-go

go 1.19
