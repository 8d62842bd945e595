#!/usr/bin/env bash
# Runs every benchmark of this module, each peer in the same run, and
# writes RESULTS.md (and the fleet plots) beside this script.
#   COUNT=10 bench/run.sh      # -count of the speed benchmarks (default 10)
#   REUSE=1 bench/run.sh       # rewrite RESULTS.md from the last run's raw outputs
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-10}
BENCHSTAT="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"
raw=.raw # the raw outputs, kept for a look (ignored by git)
mkdir -p "$raw"

if [ "${REUSE:-0}" != 1 ]; then
echo "speed benchmarks (-count $COUNT)..." >&2
go test -run '^$' -bench 'Overhead|Loopback' -benchmem -count "$COUNT" . > "$raw/speed.txt"
echo "fault scenarios (-count 3)..." >&2
go test -run '^$' -bench 'Faulty|Outage|Upload64MiB|Download64MiB' -benchtime 1x -count 3 . > "$raw/scenarios.txt"
echo "benchstat..." >&2
$BENCHSTAT -col /peer "$raw/speed.txt" > "$raw/benchstat.txt"
$BENCHSTAT -col /peer -filter '/peer:(retry OR retryablehttp OR failsafehttp)' "$raw/speed.txt" > "$raw/benchstat-peers.txt"
echo "fleet simulation (about 4 minutes)..." >&2
go run ./fleetsim -out . > "$raw/fleet.txt"
echo "fleet simulation with the budget shared on Redis (about 1.5 minutes; needs redis-server)..." >&2
go run ./fleetsim -shared -out . > "$raw/fleet-shared.txt"
echo "hedging (about 12 minutes)..." >&2
go run ./hedgesim > "$raw/hedge.txt"
date -u +%Y-%m-%d > "$raw/date.txt"
fi

{
  echo "# Benchmark results"
  echo
  echo "Measured by \`bench/run.sh\` on $(cat "$raw/date.txt"): $(go version | cut -d' ' -f3-),"
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))," \
       "$(free -g | awk '/Mem:/ {print $2}') GiB. Every peer ran in the same run, on the same machine."
  echo "Peers: \`bare\` (cleanhttp's pooled transport, or the in-memory base: the floor)," \
       "\`retry\` (this library, defaults but the waits), \`retry-nobudget\` (\`WithBudget(nil)\`)," \
       "hashicorp/go-retryablehttp v0.7.8, failsafe-go v0.9.8 failsafehttp."
  echo "One policy for all: 3 attempts, waits of 1ms then 2ms, no jitter."
  echo
  echo "## Success path and fault scenarios (medians)"
  echo
  cat "$raw/speed.txt" "$raw/scenarios.txt" | go run ./report
  echo "## benchstat: every peer against bare"
  echo
  echo '```'
  cat "$raw/benchstat.txt"
  echo '```'
  echo
  echo "## benchstat: the peers against retry"
  echo
  echo '```'
  cat "$raw/benchstat-peers.txt"
  echo '```'
  echo
  echo "## Fleet simulation"
  echo
  echo "\`go run ./fleetsim\`: K clients, each with its own Transport (4 attempts, 100ms sleep time," \
       "2s max delay, host cooldown on unless said), send 1000 requests per second in all (open loop," \
       "to random clients) to one loopback server that serves 1200 per second and sheds the rest with" \
       "503, and is down from 0.5s to 2.5s: it answers 503 (\`503\`), 503 with \`Retry-After: 1\`" \
       "(\`503+RA\`), or resets every connection (\`reset\`). Budget: \`off\` = \`WithBudget(nil)\`," \
       "\`v1\` = the old defaults (\`&Budget{Ratio: 0.2, MinPerSecond: 10}\`), \`default\` = a zero" \
       "\`Budget\` per client (ratio 0.1, 0.3 per second, per host), \`tuned\` =" \
       "\`&Budget{MinPerSecond: 0.1}\` per client. Amplification = requests the server received during" \
       "the outage ÷ requests the clients wanted; mean load 1st second after = what the server received" \
       "in the second after it came back (the clients want 1000 a second); time to 99% = from the" \
       "server's return until every later 100ms of new requests succeeds ≥ 99%."
  echo
  cat "$raw/fleet.txt"
  echo
  echo "![50 clients](fleet-K50.png)"
  echo "![500 clients](fleet-K500.png)"
  echo "![50 clients, other failures](fleet-K50-failures.png)"
  echo "![500 clients, other failures](fleet-K500-failures.png)"
  echo
  echo "### A budget shared on Redis"
  echo
  echo "\`go run ./fleetsim -shared\`: the same fleet and outage, each client a process of its own with" \
       "its own go-redis client and \`redisbudget.Budget\` (the defaults: ratio 0.1, a floor of 1 retry" \
       "per second for the whole fleet, 10s window, a sync every 100ms) on one local redis-server," \
       "against the local default (\`default\`, a zero \`retry.Budget\` per client). No jitter, host" \
       "cooldown on. Before the run each client sends one request, as the processes of a running" \
       "fleet have talked to the host before. The Transports' attempts ÷ wanted counts what the" \
       "Transports sent; the server's count (amplification) can be higher when net/http replays a" \
       "request on a reused connection that was reset, which no RoundTripper above it sees."
  echo
  cat "$raw/fleet-shared.txt"
  echo
  echo "![50 clients, shared budget](fleet-K50-redis.png)"
  echo "![500 clients, shared budget](fleet-K500-redis.png)"
  echo
  echo "## Hedging"
  echo
  echo "\`go run ./hedgesim\`: a loopback server (httptest) answers each attempt after a latency drawn from a" \
       "fixed-seed distribution: 98% uniform 1–3 ms, 2% 250 ms. In the \`independent\` scenario each attempt draws" \
       "its own latency; in the \`per-request\` scenario the latency follows from the request's id (a header, the" \
       "same on every attempt), so every attempt of a slow request is slow and hedging can only add load." \
       "16 closed-loop workers send 20,000 GETs (4 KiB answers) and 20,000 PUTs of 4 KiB with GetBody (5,000 each" \
       "in the per-request scenario), and 2,000 GETs of 512 KiB answers, flushed in 64 KiB chunks after the headers, to catch a" \
       "winner whose context is cancelled before its body is read. The server checks every PUT body, the client" \
       "every response body. Latency: client side, from RoundTrip to the end of the body. Hits: attempts the" \
       "server received. Allocations: the whole process's (client and server) during the measurement." \
       "Each measurement gets fresh peers over a fresh cleanhttp pooled transport (MaxIdleConnsPerHost 32);" \
       "no peer retries a failure (the server never fails), and each hedging peer has at most one extra attempt" \
       "in flight. Peers: \`bare\` (the pooled transport alone), \`retry\` (\`WithBudget(nil)\`, no hedging)," \
       "\`retry-hedge-10ms\` (\`WithHedge(&Hedge{Delay: 10ms})\`), \`retry-hedge-p95\`" \
       "(\`&Hedge{Quantile: 0.95, Delay: 10ms}\`, Delay until a host has 100 samples), failsafe-go v0.9.8's" \
       "hedgepolicy through failsafehttp with a fixed 10 ms delay (\`failsafehttp-hedge-10ms\`) and with its" \
       "quantile delay (\`failsafehttp-hedge-p95\`: \`NewBuilderWithDelayQuantile(0.95, 1000, 100)\`, which does" \
       "not hedge before 100 executions), and cristalhq/hedgedhttp v0.9.2 (\`hedgedhttp-10ms\`: 10 ms, 2 attempts" \
       "in all). 5 runs, each running every peer once, in an order rotated from run to run."
  echo
  cat "$raw/hedge.txt"
} > RESULTS.md
echo "wrote bench/RESULTS.md" >&2
