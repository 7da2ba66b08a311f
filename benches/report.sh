#!/usr/bin/env bash
# Every comparison of mesh against its baselines, in one run on this machine, written to
# docs/performance.md as the report: the results first, then how each was measured.
#
#   bash benches/report.sh                      # writes docs/performance.md
#   OUT=/tmp/report.md bash benches/report.sh   # elsewhere
#   ROUNDS=20 DURATION=5s bash benches/report.sh  # longer gateway rounds
#
# Needs wrk, nginx (Debian: `apt-get install wrk nginx-light`), python3, valgrind, and RabbitMQ at
# MESH_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f) for the bus. Each figure is
# a ratio against a baseline measured in the same run, or an absolute where there is no
# baseline (memory, start-up). The history of how each figure was reached is in git, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-docs/performance.md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "building the release binaries and the benchmarks" >&2
cargo build --release -q -p mesh-gateway -p mesh-registry -p shop
cargo bench -q -p mesh-benches --no-run 2>/dev/null

section() { # name, command...: runs it, keeping what it printed
    local name=$1
    shift
    echo "== $name" >&2
    "$@" >"$work/$name.out" 2>"$work/$name.err" || {
        echo "$name failed:" >&2
        cat "$work/$name.err" >&2
        exit 1
    }
}
# The markdown tables of a section's output, with the lines that introduce or follow them,
# each block set apart by an empty line.
tables() {
    grep -E '^\||^paired:|^gateway resident' "$work/$1.out" |
        awk '{ lines[NR] = $0 }
            END {
                for (i = 1; i <= NR; i++) {
                    table = (lines[i] ~ /^\|/)
                    # A table whose header follows another table is a table of its own.
                    header = (i < NR && lines[i + 1] ~ /^\|[-|]+\|$/)
                    if (i > 1 && (table != last || header)) print ""
                    print lines[i]
                    last = table
                }
            }' ||
        true
}

section gateway bash benches/gateway.sh
section requests bash benches/requests.sh
section layers cargo bench -q -p mesh-benches --bench layers -- paired
section instructions bash benches/instructions.sh
section client cargo bench -q -p mesh-benches --bench client -- paired
section registry cargo bench -q -p mesh-benches --bench registry
section bus cargo bench -q -p mesh-benches --bench bus
section shop bash benches/shop.sh

cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
{
    cat <<EOF
# Performance

Measured by \`bash benches/report.sh\` on $(date -u +%Y-%m-%d), on $(nproc) cores ($cpu), in
one run. Each figure is a ratio against a baseline measured in the same run, or an absolute
where there is no baseline (memory, start-up). On a shared VM the speed drifts by tens of
percent within seconds, so every comparison alternates its contenders in rounds and reports
the median of the rounds' own ratios with quartiles; single figures move by ±0.1 from run to
run. The history of how each figure was reached is in git.

## mesh-gateway against nginx

$(tables gateway)

Contenders, each a separate process; wrk (one thread, 64 keep-alive connections) on core 0,
the upstream (nginx answering a fixed \`200\`) and the proxy sharing core 1, so each proxy pays
for its own CPU:

- **nginx**: \`proxy_pass\` to an \`upstream\` block with keep-alive, one worker, access log off;
  **nginx+log** the same with its default access log (\`combined\`, to a file).
- **mesh-gateway**: the release binary, a public \`Path=/**\` route to the fixed upstream,
  \`MESH_LOG=warn\` (access log off); **+log** the binary's defaults, the JSON access log on,
  to a file (compared with nginx+log); **+jwt** the \`lb://app\` route needing a token (HS256,
  verified once then cached) with a per-user rate limit the load never exhausts; **+lb** the route as
  \`lb://app\`, the upstream the one instance of \`app\` in a mesh-registry; **+otlp** the
  quiet route exporting every request's span over OTLP/HTTP (100 % sampling) to a receiver
  answering 200, compared with the quiet gateway: the cost of trace export.

After a warm-up round each, each round runs every contender for the same time, starting with a
different one each round. "Proxy CPU per request" is the proxy's user and system time from
\`/proc\` divided by the requests it served. Resident memory is the plain gateway's (and the
\`lb://\` one's) right after start and after all the rounds.

### Instructions per request

$(tables requests)

The release gateway under callgrind (\`bash benches/requests.sh\`), in front of the same nginx
upstream: after a warm-up its counters are zeroed, wrk sends requests over 4 connections for
10 s, and every thread's instructions are divided by the requests answered. Counts repeat from
run to run, unlike times; the two tables after the first list the functions whose own instructions
grow most from the quiet fixed route to the \`lb://\` route and to trace export.

An \`lb://\` request goes through the service's client stack (context, metrics, timeout, retry,
breaker, bulkhead, balancer) as an \`http::Request\` whose nested futures are moved from layer
to layer (\`memcpy\`), with about 25 allocations (the request's extension map and its copy for a
retry, the cloned stack, boxed futures); closing the gap to the fixed route takes a relay path
through the stack that builds neither. An exported span costs more than a quiet request's whole
relay: the OTLP exporter's conversion of the span to protobuf, the encoding itself
(\`encoded_len\` walks each nested message again), and the copies and allocations between them
run on the serving core at 100 % sampling. At a sampling ratio of \`r\`
(\`OTEL_TRACES_SAMPLER_ARG\`) the export's share of the cost scales by \`r\`.

## Resilience layers: overhead per call

$(tables layers)

Each layer (and the whole client stack: timeout, retry, circuit breaker, bulkhead, local rate
limit) around a no-op tower service, called on one runtime thread. Rounds alternate the bare
service and every stack for the same number of calls; a stack's cost in a round is its time per
call minus the bare service's in that round.

Where the whole stack's time goes, in instructions counted by callgrind (\`bash
benches/instructions.sh\`; counts repeat from run to run, unlike times):

$(tables instructions)

Moving futures (each layer's future holds the inner one and is moved into the next; the
\`memcpy\` line) and capturing the request head for a possible retry (\`ReplayHead::capture\`,
one allocation and a copy of every field) are the two largest parts of what the stack adds;
the timeout's header insertion (a \`HeaderMap\` that grows to take it), the breaker's outcome
record and the clock readings follow.

## MeshClient against a bare hyper-util client

$(tables client)

Batches of 64 concurrent calls to a local HTTP/1.1 server that answers at once, from a bare
hyper-util client with its pool and from \`MeshClient\` (the whole stack, and the lean stack:
trace, metrics and balancing), alternating in rounds.

## mesh-registry

$(tables registry)

An embedded registry with many instances and watchers over HTTP: the time from a
deregistration to every watcher having it, registrations and renewals per second from
concurrent HTTP clients, and the resident memory each registered instance costs.

## Event bus against raw lapin

$(tables bus)

Both sides publish persistent, \`mandatory\` events to a durable topic exchange on a confirm
channel of the local RabbitMQ while a manual-ack consumer takes them: one at a time (each
confirm awaited before the next publish) and pipelined (64 publishes in flight on the one
channel, each awaiting its own confirm). Raw lapin runs twice: with the bare message (the
event's JSON, persistent) into a plain queue, and with the same message the bus sends (its
CloudEvents properties and \`traceparent\` header) into a queue with the subscription's
message TTL, consumed with its prefetch; the bus is compared with both. mesh's consumer also
decodes, deduplicates and partitions by subject. Throughput is the median of five alternating
runs; latency (publish start → handled) pools their samples.

## The shop: start-up and memory

\`\`\`
$(cat "$work/shop.out")
\`\`\`

The release \`shop\` binary (registry, gateway and six services in one process on embedded
defaults) launched five times: the time until its gateway answers \`GET /api/products\`
through the registry, then its resident memory idle and after a wrk load on that route.

For scale, one Spring Boot service on the JVM — JDBC, Flyway and PostgreSQL, measured on an
M2 Pro with Java 25 — starts in 1.9 s with a maximum resident set of 389 MB
([Gillius, "Java 25 Startup Performance for Spring Boot, Quarkus, and Micronaut", October
2025](https://dev.gillius.org/blog/2025/10/java-25-framework-startup.html)); a Spring Cloud
shop of the same eight processes (Eureka and Config Server, the gateway and six services) runs
eight such JVMs. Those figures are another machine's and another application's: they give the
order of magnitude, not a ratio.
EOF
} >"$OUT"
echo "wrote $OUT" >&2
