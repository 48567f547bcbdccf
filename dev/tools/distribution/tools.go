//go:build tools

// Package tools pins the registry command (a Distribution registry, the plain container
// registry Harbor policies replicate to in the tests and the demo) that dev/build-tools
// builds from this module, so that `go mod tidy` keeps every requirement it needs.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
