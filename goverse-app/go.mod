module github.com/goverse-harness/goverse-app

go 1.25.0

// Build against your own Goverse checkout (its generated protobuf code is not in the published
// module): go mod edit -replace github.com/xiaonanln/goverse=/path/to/goverse && go mod tidy
require (
	github.com/xiaonanln/goverse v0.1.1
	google.golang.org/protobuf v1.36.11
)
