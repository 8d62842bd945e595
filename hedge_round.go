package retry

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// A hedged round: the attempt the loop asked for, and the hedges sent while
// it (and they) go unanswered. The round is the loop's attempt: it returns
// one result, the winner's, or, when every attempt failed in a way worth
// retrying, the last failure, which the loop then judges and retries by
// its own rules. The round owns the hedge delay's timer, as the loop owns
// the waits between rounds; it alone judges, counts and reports, while
// each attempt runs in a goroutine of its own and only sends.

// sent is the result of one attempt of a round; n 0 is the hedge timer's
// tick instead, for the round numbered round.
type sent struct {
	n      int
	round  int
	hedge  bool
	resp   *http.Response
	err    error
	cancel context.CancelFunc // ends the attempt's context
	took   time.Duration      // to response headers
	panic  any                // what the attempt panicked with, if it did
}

// flight is an attempt of a round still in flight.
type flight struct {
	n      int
	cancel context.CancelFunc
}

// hedgedRound is the state of a hedged request's rounds, owned by the
// goroutine that runs them (the loop's); the attempts' goroutines only send
// on results, and the timer only ticks on it.
type hedgedRound struct {
	rt      *hedgedRoundTrip
	ctx     context.Context
	results chan sent // made once per request, for all its rounds
	round   int       // the current round's number
	wg      sync.WaitGroup
	flying  []flight
	hedges  int       // hedges in flight
	buf     [4]flight // flying's array, for up to 3 hedges
}

// hedgedRoundTrip is a hedged request's roundTrip and its rounds' state, in
// one allocation (apart from roundTrip, whose size the success path of
// every other request pays for).
type hedgedRoundTrip struct {
	roundTrip
	hr hedgedRound
	// hedge is the request's Hedge; last and lastHedge say which attempt
	// the last round returned, and lastDelay is the round's hedge delay.
	hedge     *Hedge
	unsent    int // attempts that could not be sent
	last      int
	lastHedge bool
	lastDelay time.Duration
}

// tick is the hedge timer's function: it tells round that the delay
// passed. The results channel has room for it (see round), and a tick of a
// round that ended is ignored by the next.
func (hr *hedgedRound) tick(round int) {
	select {
	case hr.results <- sent{round: round}:
	default:
	}
}

// round makes attempt rt.n+1 and hedges it; see WithHedge. A request whose
// body cannot be sent again is not hedged: its round is its one attempt.
func (rt *hedgedRoundTrip) round(ctx context.Context) (*http.Response, error) {
	if !rt.body.replayable() {
		rt.n++
		rt.last = rt.n
		return rt.send(ctx, rt.n, false)
	}
	d := rt.hedgeDelay()
	if d <= 0 || rt.c.maxAttempts < 2 {
		// No delay yet (a Quantile still warming up, without Delay), or no
		// attempt to spare: the round is one attempt, timed for the
		// Quantile.
		rt.n++
		rt.last, rt.lastHedge = rt.n, false
		start := time.Now()
		resp, err := rt.send(ctx, rt.n, false)
		if rt.c.http.classify(resp, err) == Success && err == nil {
			rt.recordLatency(time.Since(start))
		}
		return resp, err
	}
	// No more hedges in flight than attempts may be made, whatever
	// MaxHedges says.
	most := min(rt.hedge.maxHedges(), rt.c.maxAttempts-1)
	hr := &rt.hr
	hr.ctx = ctx
	hr.round++
	if hr.results == nil {
		// Room for every attempt's result and two ticks (one may be a
		// late tick of the round before), so that no sender ever blocks.
		hr.results = make(chan sent, 3+most)
		hr.flying = hr.buf[:0]
	}
	start := time.Now()
	hr.launch(false)
	defer hr.wg.Wait() // every attempt's goroutine has ended when the round does

	round := hr.round
	timer := time.AfterFunc(d, func() { hr.tick(round) })
	defer timer.Stop()
	ticking := true
	var last sent // the latest retryable failure, held until a later one or the end
	held := false
	for {
		r := <-hr.results
		if r.n == 0 {
			if r.round != hr.round || !ticking {
				continue // a late tick of an earlier round
			}
			ticking = false
			if hr.hedges < most && hr.mayHedge() {
				hr.launch(true)
				rt.emitHedge(ctx, rt.n)
				if hr.hedges < most {
					timer.Reset(rt.hedgeDelay())
					ticking = true
				}
			}
			continue
		}
		hr.landed(r)
		if r.panic != nil {
			// The base (or GetBody, or WithPrepareRetry) panicked: the
			// others end first, then the panic goes on in the caller's
			// goroutine, as it would without hedging.
			r.cancel()
			hr.end()
			hr.release(last, held)
			panic(r.panic)
		}
		if _, unsent := r.err.(*unsentError); unsent {
			// Nothing was sent (GetBody or WithPrepareRetry failed). While
			// other attempts are in flight they decide; after them, a
			// retryable failure held, else this error, on which the loop
			// stops.
			r.cancel()
			rt.unsent++
			switch {
			case len(hr.flying) > 0:
				continue
			case held:
				return rt.hand(last, last.hedge)
			}
			rt.unsent-- // the loop counts this one itself
			return rt.hand(r, false)
		}
		if r.err != nil && ctx.Err() != nil {
			// The caller gave up: every attempt is ending with it, and the
			// loop stops by the context rule.
			hr.end()
			hr.release(last, held)
			return rt.hand(r, false)
		}
		vd := rt.judge(r.resp, r.err)
		if vd.stop || !vd.category.Retryable() {
			// The winner: the others are cancelled at once. When a hedge
			// wins, the attempt it replaced took at least this long: the
			// Quantile learns that, not the hedge's own time alone.
			if vd.category == Success {
				if r.hedge {
					rt.recordLatency(time.Since(start))
				} else {
					rt.recordLatency(r.took)
				}
			}
			hr.end()
			hr.release(last, held)
			return rt.hand(r, r.hedge)
		}
		// A retryable failure: wait for the others, if any.
		hr.release(last, held)
		last, held = r, true
		if len(hr.flying) == 0 {
			return rt.hand(last, last.hedge)
		}
	}
}

// launch sends the next attempt in a goroutine of its own, under a context
// of its own.
func (hr *hedgedRound) launch(hedge bool) {
	rt := hr.rt
	rt.n++
	actx, cancel := context.WithCancel(hr.ctx)
	hr.flying = append(hr.flying, flight{rt.n, cancel})
	if hedge {
		hr.hedges++
	}
	hr.wg.Add(1)
	go hr.fly(actx, sent{n: rt.n, round: hr.round, hedge: hedge, cancel: cancel})
}

// fly makes attempt s.n and sends its result, or the panic it met.
func (hr *hedgedRound) fly(ctx context.Context, s sent) {
	defer hr.wg.Done()
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			s.panic = p
			hr.results <- s
		}
	}()
	s.resp, s.err = hr.rt.send(ctx, s.n, s.hedge)
	s.took = time.Since(start)
	hr.results <- s
}

// landed takes r's attempt off the list of those in flight.
func (hr *hedgedRound) landed(r sent) {
	for i, f := range hr.flying {
		if f.n == r.n {
			hr.flying = append(hr.flying[:i], hr.flying[i+1:]...)
			break
		}
	}
	if r.hedge {
		hr.hedges--
	}
}

// mayHedge reports whether a hedge may be sent now, and if so spends a
// retry of the budget for it: the caller still waits, the attempts so far
// are fewer than MaxAttempts, and the host is not cooling down (here or,
// with a SharedCooldown, in the fleet). The budget is asked last. The
// round checks MaxHedges.
func (hr *hedgedRound) mayHedge() bool {
	rt := hr.rt
	c := rt.c
	if hr.ctx.Err() != nil || rt.n-rt.unsent >= c.maxAttempts {
		return false
	}
	c.learnCooldown(rt.req.URL.Host) // a fleet's cooldown too
	return c.cooling(rt.req.URL.Host, false) == 0 && c.spendRetry(rt.req.URL.Host)
}

// end cancels every attempt still in flight but the winner, waits for
// them to end, and closes what they produced: no goroutine of the round
// outlives it. The cancelled attempts are reported as Canceled, and a
// cancelled hedge counts as lost.
func (hr *hedgedRound) end() {
	for _, f := range hr.flying {
		f.cancel()
	}
	for left := len(hr.flying); left > 0; {
		r := <-hr.results
		if r.n == 0 {
			continue // a tick
		}
		left--
		r.cancel()
		if r.resp != nil {
			drainAndClose(r.resp) // bounded; its context is cancelled already
		}
		if _, unsent := r.err.(*unsentError); unsent {
			hr.rt.unsent++
		} else if r.panic == nil {
			hr.rt.report(hr.ctx, r, Canceled)
		}
	}
	hr.flying, hr.hedges = hr.flying[:0], 0
	hr.wg.Wait()
}

// release lets go of a held retryable failure that will not be returned:
// it is reported, its response drained and closed, its context ended.
func (hr *hedgedRound) release(r sent, held bool) {
	if !held {
		return
	}
	hr.rt.report(hr.ctx, r, hr.rt.judge(r.resp, r.err).category)
	r.cancel() // first: a stalled body then ends at once
	drainAndClose(r.resp)
}

// hand returns r as the round's result: the loop judges it again, reports
// it and, if it failed, retries it or not. Its context now ends when its
// body is closed (or at once, without a response). won says whether r is a
// hedge whose result is the round's (retry_http_hedges_total's "won").
func (rt *hedgedRoundTrip) hand(r sent, won bool) (*http.Response, error) {
	rt.last, rt.lastHedge = r.n, r.hedge
	if r.hedge {
		rt.c.metrics.hedge(rt.method(), won)
	}
	if r.resp == nil {
		r.cancel()
		return nil, r.err
	}
	r.resp.Body = cancelOnClose(r.resp.Body, r.cancel)
	return r.resp, r.err
}

// report tells the observers about an attempt of the round that the loop
// will not see (every one but the round's result), as the loop does for
// its own: an EventAttempt, and the budget's Attempted unless the round
// cancelled it. A hedge that is not the round's result counts as lost.
func (rt *hedgedRoundTrip) report(ctx context.Context, r sent, cat Category) {
	c := rt.c
	if b := c.budget; b != nil && cat != Canceled {
		if _, local := b.(*Budget); !local {
			b.Attempted(rt.req.URL.Host, cat.Retryable())
		}
	}
	if r.hedge {
		c.metrics.hedge(rt.method(), false)
	}
	if c.observes(EventAttempt) {
		ev := Event{Kind: EventAttempt, Attempt: r.n, Hedge: r.hedge, Err: r.err, Category: cat, MaxAttempts: c.maxAttempts, RetryAfter: -1}
		if cat == Canceled && r.err == nil {
			ev.Err = context.Canceled
		}
		if c.onAttempt != nil {
			ev.Name = c.name
			if ev.Name == "" {
				ev.Name = rt.name()
			}
			rt.describe(&ev, r.resp)
		} else {
			ev.Method = rt.method()
		}
		c.emit(ctx, controllerTransport, &ev)
	}
}

// made tells the loop how many attempts the request has made (those that
// could not be sent left out), and the number of the one the last round
// returned and whether it was a hedge.
func (rt *hedgedRoundTrip) made() (total, last int, hedge bool) {
	return rt.n - rt.unsent, rt.last, rt.lastHedge
}

// emitHedge tells the observers that hedge n was sent.
func (rt *hedgedRoundTrip) emitHedge(ctx context.Context, n int) {
	c := rt.c
	ev := Event{Kind: EventHedge, Attempt: n, Hedge: true, MaxAttempts: c.maxAttempts, RetryAfter: -1, Delay: rt.lastDelay}
	ev.Name = c.name
	if ev.Name == "" {
		ev.Name = rt.name()
	}
	ev.Method, ev.URL, ev.reqURL = rt.method(), RedactURL(rt.req.URL), rt.secrets()
	c.emit(ctx, controllerTransport, &ev)
}

// hedgeDelay returns how long the round waits for an answer before it
// sends a hedge (0: never): the Hedge's Delay, or the Quantile of the
// host's recent latencies once it has HedgeMinSamples, never below
// MinDelay.
func (rt *hedgedRoundTrip) hedgeDelay() time.Duration {
	h := rt.hedge
	d := h.Delay
	if h.Quantile > 0 {
		if q, ok := rt.latencies().quantile(h.Quantile); ok {
			d = max(q, h.MinDelay)
		}
	}
	rt.lastDelay = d
	return d
}

// recordLatency adds a successful attempt's latency to its host's, when a
// Quantile needs them.
func (rt *hedgedRoundTrip) recordLatency(d time.Duration) {
	if rt.hedge.Quantile > 0 {
		rt.latencies().add(d)
	}
}

// latencies returns the latencies of the request's host (scheme, host and
// port) in this Transport.
func (rt *hedgedRoundTrip) latencies() *latencies {
	i := 0
	if rt.req.URL.Scheme == "https" {
		i = 1
	}
	return rt.t.latencies[i].get(rt.req.URL.Host)
}
