package bench

import (
	"log/slog"

	"github.com/retrykit/retry"
)

// quiet keeps retry's footprints out of benchmark output (the peers' logs
// are off too).
var quiet = retry.WithLogger(slog.New(slog.DiscardHandler))
