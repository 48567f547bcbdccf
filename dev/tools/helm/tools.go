//go:build tools

// Package tools pins the helm command that dev/build-tools builds from this module, so
// that `go mod tidy` keeps every requirement it needs.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
