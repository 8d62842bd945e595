package redisbudget

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// slots is how many slots a Window has.
const slots = 10

// shareOfHeadroom is the part of the fleet's headroom that the processes
// sending to a host may spend, together, until their next sync
// (see Budget: it bounds the overshoot of decisions that are one or two
// intervals stale).
const shareOfHeadroom = 0.25

// loop syncs at once, then every SyncInterval until Close. When HoldOff
// asks, it syncs at once instead of at the next tick, which it then skips;
// a request that comes when the next tick's sync was made early already
// waits for the tick after. So it makes at most one sync per tick (plus
// the first), and a sync that takes longer than an interval delays the
// next.
func (b *Budget) loop() {
	defer close(b.done)
	t := time.NewTicker(b.o.SyncInterval)
	defer t.Stop()
	b.sync()
	early, asked := false, false // the next tick's sync was made; one more was asked for
	for {
		select {
		case <-b.base.Done():
			return
		case <-b.kick:
			if early {
				asked = true
				continue
			}
			early = true
		case <-t.C:
			if early {
				early = asked
				if !asked {
					continue
				}
				asked = false
			}
		}
		b.sync()
	}
}

// sent is what one sync sent for a host and the commands that read back
// the fleet's counts.
type sent struct {
	h                   *host
	requests            int64
	retries             int64
	hold                int64
	counts              *redis.SliceCmd
	senders, sendersWas *redis.IntCmd
	cool                *redis.DurationCmd
}

// sync sends this process's counts since the last sync and reads the
// fleet's, in one pipelined round trip.
func (b *Budget) sync() {
	hosts := b.live()
	if len(hosts) == 0 {
		return // an idle process puts no load on Redis
	}
	ctx, cancel := context.WithTimeout(b.base, 2*b.o.SyncInterval)
	defer cancel()
	start := time.Since(b.origin)
	slot := b.origin.Add(start+b.offset).UnixNano() / int64(b.width)
	ttl := b.o.Window + 2*b.width
	// The requests of a longer gap than a Window since the last sync are
	// scaled down to a Window's worth: they would inflate the fleet's
	// count for the next Window.
	scale := 1.0
	if gap := start - b.okAt; b.okAt > 0 && gap > b.o.Window {
		scale = float64(b.o.Window) / float64(gap)
	}

	pipe := b.client.Pipeline()
	clock := pipe.Time(ctx)
	now := strconv.FormatInt(slot, 10)
	was := strconv.FormatInt(slot-1, 10)
	batch := make([]sent, 0, len(hosts))
	keys := make([]string, 0, 2*slots)
	for _, h := range hosts {
		s := sent{h: h, requests: h.requests.Swap(0), retries: h.retries.Swap(0), hold: h.hold.Swap(0)}
		if q := int64(math.Ceil(float64(s.requests) * scale)); q > 0 {
			pipe.IncrBy(ctx, h.key+"q:"+now, q)
			pipe.PExpire(ctx, h.key+"q:"+now, ttl)
		}
		if s.retries > 0 {
			pipe.IncrBy(ctx, h.key+"r:"+now, s.retries)
			pipe.PExpire(ctx, h.key+"r:"+now, ttl)
		}
		if s.requests > 0 {
			pipe.SAdd(ctx, h.key+"p:"+now, b.id)
			pipe.PExpire(ctx, h.key+"p:"+now, ttl)
		}
		if left := time.Duration(s.hold) - start; s.hold > 0 && left > 0 {
			ms := max(left.Milliseconds(), 1)
			pipe.SetNX(ctx, h.key+"cool", "1", time.Duration(ms)*time.Millisecond)
			pipe.Do(ctx, "pexpire", h.key+"cool", ms, "gt")
		}
		keys = keys[:0]
		for i := range int64(slots) {
			n := strconv.FormatInt(slot-i, 10)
			keys = append(keys, h.key+"q:"+n, h.key+"r:"+n)
		}
		s.counts = pipe.MGet(ctx, keys...)
		s.senders = pipe.SCard(ctx, h.key+"p:"+now)
		s.sendersWas = pipe.SCard(ctx, h.key+"p:"+was)
		s.cool = pipe.PTTL(ctx, h.key+"cool")
		batch = append(batch, s)
	}
	_, err := pipe.Exec(ctx)
	b.syncs.Add(1)
	if err != nil {
		b.failed(batch, err)
		return
	}
	end := time.Since(b.origin)
	if t, err := clock.Result(); err == nil {
		// Redis's clock read halfway through the round trip.
		b.offset = t.Sub(b.origin.Add((start + end) / 2))
	}
	anyCool := false
	for _, s := range batch {
		b.share(s)
		if d := s.cool.Val(); d > 0 {
			raise(&s.h.coolUntil, int64(end+d))
		} else if s.h.hold.Load() == 0 && s.h.coolUntil.Load() <= int64(end) {
			s.h.coolUntil.Store(0)
		}
		anyCool = anyCool || s.h.coolUntil.Load() > 0
	}
	b.cooling.Store(anyCool)
	b.okAt = end
	b.lastOK.Store(int64(start))
	if b.fellBack {
		b.fellBack = false
		b.o.Logger.Info("redisbudget: back on Redis; the fleet's budget decides retries again", "prefix", b.o.Prefix)
	}
}

// share sets the retries s's host may spend until the next sync: its share
// of the fleet's headroom.
func (b *Budget) share(s sent) {
	vals := s.counts.Val()
	var requests, retries float64
	for i, v := range vals {
		str, _ := v.(string)
		n, _ := strconv.ParseFloat(str, 64)
		if i%2 == 0 {
			requests += n
		} else {
			retries += n
		}
	}
	// The processes sending to the host, this one among them: each may
	// ask for retries before the next sync, when the host starts failing.
	senders := float64(max(s.senders.Val(), s.sendersWas.Val(), 1))
	allowed := b.o.MinPerSecond*b.o.Window.Seconds() + b.o.Ratio*requests
	credit := max(allowed-retries, 0)*shareOfHeadroom/senders - float64(s.h.retries.Load())
	s.h.credit.Store(math.Float64bits(max(credit, 0)))
	s.h.synced.Store(true)
}

// failed puts back the counts a failed sync could not send, and logs the
// first failure of a run of them.
func (b *Budget) failed(batch []sent, err error) {
	b.failures.Add(1)
	for _, s := range batch {
		s.h.requests.Add(s.requests)
		s.h.retries.Add(s.retries)
		raise(&s.h.hold, s.hold)
	}
	if !b.fellBack && b.base.Err() == nil {
		b.fellBack = true
		b.o.Logger.Warn("redisbudget: Redis unreachable; the fallback budget decides retries until a sync succeeds",
			"prefix", b.o.Prefix, "error", err.Error())
	}
}

// live returns the hosts to sync, and forgets those idle for a Window with
// nothing left to send or hold.
func (b *Budget) live() []*host {
	g := b.gen.Add(1)
	m := b.hosts.Load()
	if m == nil {
		return nil
	}
	idle := uint64(b.o.Window/b.o.SyncInterval) + 1
	hosts := make([]*host, 0, len(*m))
	var gone []string
	for name, h := range *m {
		if h.used.Load()+idle < g && h.requests.Load() == 0 && h.retries.Load() == 0 &&
			h.hold.Load() == 0 && h.coolUntil.Load() < int64(time.Since(b.origin)) {
			gone = append(gone, name)
			continue
		}
		hosts = append(hosts, h)
	}
	if len(gone) > 0 {
		b.forget(gone)
	}
	return hosts
}

// forget removes hosts from the table.
func (b *Budget) forget(names []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.hosts.Load()
	m := make(map[string]*host, len(old))
	for k, v := range old {
		m[k] = v
	}
	for _, n := range names {
		delete(m, n)
	}
	b.hosts.Store(&m)
}
