package redisbudget

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"

	"github.com/retrykit/retry/redisbudget/redistest"
)

// A sync running while HoldOff is called on hosts it may or may not have
// in its list never hides the cooldown from CoolingUntil: the other
// Transports of the process learn it at once.
func TestHoldOffNotLostToConcurrentSync(t *testing.T) {
	rs := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	o, _ := Options{Prefix: "holdoff", SyncInterval: time.Second, Logger: slog.New(slog.DiscardHandler)}.resolved()
	b := &Budget{client: c, o: o, id: "x", origin: time.Now(), width: o.Window / slots,
		done: make(chan struct{}), kick: make(chan struct{}, 1)}
	b.base, b.cancel = context.WithCancel(context.Background())
	defer b.cancel()
	b.lastOK.Store(-1)
	for i := range 2000 {
		b.Started("h" + strconv.Itoa(i))
	}
	var stop atomic.Bool
	syncs := make(chan struct{})
	go func() {
		defer close(syncs)
		for !stop.Load() {
			b.sync()
		}
	}()
	lost := 0
	for i := range 100 {
		h := "h" + strconv.Itoa(i)
		end := time.Now().Add(20 * time.Millisecond)
		b.HoldOff(h, end)
		select {
		case <-b.kick:
		default:
		}
		for range 200 {
			if b.CoolingUntil(h).IsZero() && time.Until(end) > 10*time.Millisecond {
				lost++
				break
			}
		}
		time.Sleep(40 * time.Millisecond)
	}
	stop.Store(true)
	<-syncs
	t.Logf("HoldOffs whose cooldown CoolingUntil did not report right after: %d of 100", lost)
	assert.Zero(t, lost)
}
