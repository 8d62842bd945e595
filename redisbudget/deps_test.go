package redisbudget

import (
	_ "github.com/redis/go-redis/v9"
	_ "github.com/retrykit/retry"
	_ "github.com/stretchr/testify/require"
	_ "go.uber.org/goleak"
)
