package redisbudget

import (
	"context"
	"errors"
	"math"
	"net"
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
	h        *host
	requests int64
	retries  int64
	hold     int64
	counts   *redis.SliceCmd
	senders  *redis.IntCmd
	cool     *redis.DurationCmd
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
	// Counts kept over a longer gap than a Window since the last success
	// (or since New) are scaled down to a Window's worth: all in one slot,
	// they would inflate the fleet's counts for the next Window.
	scale := 1.0
	if gap := start - b.okAt; gap > b.o.Window {
		scale = float64(b.o.Window) / float64(gap)
	}
	scaled := func(n int64) int64 { return int64(math.Ceil(float64(n) * scale)) }

	pipe := b.client.Pipeline()
	clock := pipe.Time(ctx)
	now := strconv.FormatInt(slot, 10)
	batch := make([]sent, 0, len(hosts))
	keys := make([]string, 0, 2*slots)
	for _, h := range hosts {
		s := sent{h: h, requests: h.requests.Swap(0), retries: h.retries.Swap(0), hold: h.hold.Swap(0)}
		if q := scaled(s.requests); q > 0 {
			pipe.IncrBy(ctx, h.key+"q:"+now, q)
			pipe.PExpire(ctx, h.key+"q:"+now, ttl)
		}
		if r := scaled(s.retries); r > 0 {
			pipe.IncrBy(ctx, h.key+"r:"+now, r)
			pipe.PExpire(ctx, h.key+"r:"+now, ttl)
		}
		if left := time.Duration(s.hold) - start; s.hold > 0 && left > 0 {
			ms := max(left.Milliseconds(), 1)
			pipe.SetNX(ctx, h.key+"cool", "1", time.Duration(ms)*time.Millisecond)
			pipe.Do(ctx, "pexpire", h.key+"cool", ms, "gt")
		}
		// This process sends to the host: a member of its senders, scored
		// by slot, for a Window.
		pipe.ZAdd(ctx, h.key+"p", redis.Z{Score: float64(slot), Member: b.id})
		pipe.ZRemRangeByScore(ctx, h.key+"p", "-inf", "("+strconv.FormatInt(slot-slots+1, 10))
		pipe.PExpire(ctx, h.key+"p", ttl)
		keys = keys[:0]
		for i := range int64(slots) {
			n := strconv.FormatInt(slot-i, 10)
			keys = append(keys, h.key+"q:"+n, h.key+"r:"+n)
		}
		s.counts = pipe.MGet(ctx, keys...)
		s.senders = pipe.ZCard(ctx, h.key+"p")
		s.cool = pipe.PTTL(ctx, h.key+"cool")
		batch = append(batch, s)
	}
	_, err := pipe.Exec(ctx)
	b.syncs.Add(1)
	if readErr := readError(clock, batch); readErr != nil {
		b.failed(batch, readErr)
		return
	} else if err != nil {
		// Only writes failed (say PEXPIRE … GT on a Redis before 7.0):
		// the counts are read, the cooldown's time to live may not be.
		b.writeFailed(err)
	}
	end := time.Since(b.origin)
	if t, err := clock.Result(); err == nil {
		// Redis's clock read halfway through the round trip.
		b.offset = t.Sub(b.origin.Add((start + end) / 2))
	}
	for _, s := range batch {
		b.share(s)
		if d := s.cool.Val(); d > 0 {
			raise(&s.h.coolUntil, int64(end+d))
		} else if c := s.h.coolUntil.Load(); s.h.hold.Load() == 0 && c > 0 && c <= int64(end) {
			s.h.coolUntil.CompareAndSwap(c, 0) // ended: unless a HoldOff raised it meanwhile
		}
	}
	b.setCooling()
	b.okAt = end
	b.lastOK.Store(int64(start))
	if b.fellBack {
		b.fellBack = false
		b.o.Logger.Info("redisbudget: back on Redis; the fleet's budget decides retries again", "prefix", b.o.Prefix)
	}
}

// setCooling sets the flag that CoolingUntil reads first: whether any host
// has a cooldown. It holds mu, as HoldOff does to raise one, so that the
// flag never hides a cooldown just raised.
func (b *Budget) setCooling() {
	b.mu.Lock()
	defer b.mu.Unlock()
	any := false
	if m := b.hosts.Load(); m != nil {
		for _, h := range *m {
			if h.coolUntil.Load() > 0 {
				any = true
				break
			}
		}
	}
	b.cooling.Store(any)
}

// readError returns the first error of the commands that read the fleet's
// counts, or nil.
func readError(clock *redis.TimeCmd, batch []sent) error {
	if err := clock.Err(); err != nil {
		return err
	}
	for _, s := range batch {
		for _, err := range []error{s.counts.Err(), s.senders.Err(), s.cool.Err()} {
			if err != nil && err != redis.Nil {
				return err
			}
		}
	}
	return nil
}

// share sets the retries s's host may spend until the next sync: its share
// of the fleet's headroom. A host's first sync gives none: it counts this
// process among the senders, and the next sync, when the other processes
// that started sending at the same time are counted too, gives the share.
func (b *Budget) share(s sent) {
	if s.h.syncs.Add(1) < 2 {
		return
	}
	var requests, retries float64
	for i, v := range s.counts.Val() {
		str, _ := v.(string)
		n, _ := strconv.ParseFloat(str, 64)
		if i%2 == 0 {
			requests += n
		} else {
			retries += n
		}
	}
	// The processes sending to the host in the last Window, this one among
	// them: any of them may start asking for retries at the same moment.
	senders := float64(max(s.senders.Val(), 1))
	allowed := b.o.MinPerSecond*b.o.Window.Seconds() + b.o.Ratio*requests
	credit := max(allowed-retries, 0)*shareOfHeadroom/senders - float64(s.h.retries.Load())
	s.h.credit.Store(math.Float64bits(max(credit, 0)))
}

// failed handles a sync whose reads failed. Redis may have applied its
// writes even so (it ran the pipeline but answered too late), so the
// counts go back for the next sync only in the direction that errs on the
// strict side: retries always (counted twice, they deny more), requests
// only when nothing was sent (the connection was refused; counted twice,
// they would allow more). A cooldown goes back too: writing it twice
// changes nothing. The Logger hears once, when the Fallback takes over.
func (b *Budget) failed(batch []sent, err error) {
	b.failures.Add(1)
	var op *net.OpError
	unsent := errors.As(err, &op) && op.Op == "dial"
	for _, s := range batch {
		if unsent {
			s.h.requests.Add(s.requests)
		}
		s.h.retries.Add(s.retries)
		raise(&s.h.hold, s.hold)
	}
	if !b.fellBack && b.stale() && b.base.Err() == nil {
		b.fellBack = true
		b.o.Logger.Warn("redisbudget: Redis unreachable; the fallback budget decides retries until a sync succeeds",
			"prefix", b.o.Prefix, "error", err.Error())
	}
}

// writeFailed logs, once, a sync whose writes failed though its reads did
// not.
func (b *Budget) writeFailed(err error) {
	if !b.writeLogged {
		b.writeLogged = true
		b.o.Logger.Warn("redisbudget: a write to Redis failed (cooldowns need Redis 7.0 or later)", "prefix", b.o.Prefix, "error", err.Error())
	}
}

// live returns the hosts to sync, and forgets those that have been idle for
// idleWindows Windows with nothing left to send or hold.
func (b *Budget) live() []*host {
	g := b.gen.Add(1)
	m := b.hosts.Load()
	if m == nil {
		return nil
	}
	hosts := make([]*host, 0, len(*m))
	var gone []string
	for name, h := range *m {
		if b.idle(h, g) {
			gone = append(gone, name)
			continue
		}
		hosts = append(hosts, h)
	}
	if len(gone) > 0 {
		hosts = append(hosts, b.forget(gone, g)...)
	}
	return hosts
}

// idle reports whether h, at sync g, has had no request for idleWindows
// Windows and has nothing left to send or hold.
func (b *Budget) idle(h *host, g uint64) bool {
	return h.used.Load()+uint64(idleWindows*b.o.Window/b.o.SyncInterval)+1 < g &&
		h.requests.Load() == 0 && h.retries.Load() == 0 && h.hold.Load() == 0 &&
		h.coolUntil.Load() < int64(time.Since(b.origin))
}

// idleWindows is how many Windows a host stays shared after its last
// request: long enough that a process sending now and then is still
// counted among its senders and still learns its cooldowns.
const idleWindows = 3

// forget removes the hosts that are still idle, checked again under mu (a
// HoldOff holds it too), and returns those that are not, to be synced. A
// request that found a removed host just before may still count into it:
// what it counted is carried over to the host's new entry (best effort: a
// count made after this sweep is lost, which errs on the strict side for
// requests, the loose side for retries, by one request's worth).
func (b *Budget) forget(names []string, g uint64) (busy []*host) {
	b.mu.Lock()
	old := *b.hosts.Load()
	m := make(map[string]*host, len(old))
	for k, v := range old {
		m[k] = v
	}
	var dropped []string
	for _, n := range names {
		if h := m[n]; b.idle(h, g) {
			delete(m, n)
			dropped = append(dropped, n)
		} else {
			busy = append(busy, h)
		}
	}
	b.hosts.Store(&m)
	b.mu.Unlock()
	for _, n := range dropped {
		h := old[n]
		q, r := h.requests.Swap(0), h.retries.Swap(0)
		if q == 0 && r == 0 {
			continue
		}
		if nh := b.host(n); nh != nil {
			nh.requests.Add(q)
			nh.retries.Add(r)
		}
	}
	return busy
}
