//go:build tools

// Package tools pins the helm command that dev/build-tools builds from this module.
package tools

import _ "helm.sh/helm/v3/pkg/action"
