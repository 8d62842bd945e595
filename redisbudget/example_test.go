package redisbudget_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/retrykit/retry"
	"github.com/retrykit/retry/redisbudget"
	"github.com/retrykit/retry/redisbudget/redistest"
)

// Every process of the fleet builds its Transport the same way, with the
// same Prefix: their retries to a host then share one budget, and a
// Retry-After seen by one holds off the others.
func ExampleNew() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer api.Close()
	addr := "127.0.0.1:1" // nobody: requests go on just the same, on the fallback budget
	if rs, err := redistest.Launch(); err == nil {
		defer rs.Close()
		addr = rs.Addr()
	}

	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	budget := redisbudget.New(rdb, redisbudget.Options{Prefix: "checkout", SyncInterval: 50 * time.Millisecond})
	defer budget.Close()
	client := retry.NewClient(retry.WithBudget(budget))

	resp, err := client.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
