//go:build tools

// Package tools pins the Knative commands so `go mod tidy` keeps their requirements.
package tools

import (
	_ "knative.dev/eventing/cmd/event_display"
	_ "knative.dev/eventing/cmd/mtping"
)
