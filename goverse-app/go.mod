module github.com/goverse-harness/goverse-app

go 1.25.0

// Builds only against a Goverse checkout with its protobuf code generated (that code is not in the
// published module); see docs/platforms.md "The node: goverse-app".
require (
	github.com/xiaonanln/goverse v0.1.1
	google.golang.org/protobuf v1.36.11
)
