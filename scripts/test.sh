#!/usr/bin/env bash
# Runs every Torus test: the Swift test suite (unit, integration, interop with
# curl/Python clients), the core under AddressSanitizer, the DocC build, the example
# package against real clients, then the harnesses that need more than one process.
#
# Usage: scripts/test.sh                        everything (Autobahn in full mode)
#   TORUS_QUICK=1 scripts/test.sh               the Swift suite only
#   TORUS_SKIP_SWIFT_TESTS=1 scripts/test.sh    everything but the Swift suite and
#                                               the ASan run (to check the other steps)
#   TORUS_ASAN=0 scripts/test.sh                no AddressSanitizer run
#   TORUS_TSAN=0 scripts/test.sh                no ThreadSanitizer run
#   TORUS_SKIP_FUZZ=1, TORUS_FUZZ_SECONDS=N     no fuzzing / seconds per fuzz target
#   TORUS_SKIP_DOCS=1 / TORUS_SKIP_EXAMPLE=1    no DocC build / no example run
#   TORUS_SKIP_AUTOBAHN=1 scripts/test.sh       everything but Autobahn
#   TORUS_AUTOBAHN_MODE=ci scripts/test.sh      Autobahn's subsets over ws:// and wss:// (~100 s)
#   TORUS_SKIP_SOAK=1 scripts/test.sh           everything but the 2-minute hub soak
#   TORUS_SOAK_SECONDS=N scripts/test.sh        soak length, default 120
#   TORUS_SKIP_CLUSTER_SOAK=1 scripts/test.sh   no 3-node hub soak on Redis (2 minutes)
#                                               and no run-cluster.sh smoke
#   TORUS_CLUSTER_SOAK_SECONDS=N                its length, default 120
#   TORUS_SKIP_SCALE=1 scripts/test.sh          no hub scale step (10,000 links, release)
#
# Steps that need what this machine or this checkout may not have say SKIPPED and
# why, and the rest still runs: the dead-peer harness where network namespaces are
# not allowed, Autobahn where its driver (../shared/autobahn, or AUTOBAHN_DIR) is
# not present. Under CI (CI=true) a missing Autobahn driver is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh

skipped=()
# step TITLE: prints "== TITLE" and notes how long the step before it took (the table is
# printed at the end, so CI's time can be read step by step).
timings=()
step_name="" step_start=$(date +%s) run_start=$(date +%s)
step() {
  local now; now=$(date +%s)
  [ -n "$step_name" ] && timings+=("$(printf '%5d s  %s' $((now - step_start)) "$step_name")")
  step_name="$1" step_start=$now
  echo "== $1"
}

step "swift build --build-tests (every product: the tests run the demos and the allocation check)"
if [ "${TORUS_SKIP_SWIFT_TESTS:-0}" = "1" ]; then swift build; else swift build --build-tests; fi

if [ "${TORUS_SKIP_SWIFT_TESTS:-0}" = "1" ]; then
  echo "== swift test SKIPPED (TORUS_SKIP_SWIFT_TESTS=1)"
  skipped+=("swift test and ASan (TORUS_SKIP_SWIFT_TESTS=1)")
else
  # One test process per test target, one after another: each target's tests run in
  # parallel inside it, but the targets do not share one process's threads, memory
  # and descriptors (together, ~420 tests on 2 cores took 40-95 s and the timing
  # checks of whichever target lost the race failed; apart they take ~70 s in all).
  # Each process is bounded in time, so a hang fails the step instead of the CI.
  : > /tmp/torus-swift-test.log
  for target in TorusTests TorusHTTPTests TorusWebSocketTests TorusTLSTests TorusHubTests TorusRedisTests; do
    step "swift test: $target"
    timeout --kill-after=30 900 swift test --skip-build --filter "^$target\\." 2>&1 | tee /tmp/torus-swift-test-$target.log
    cat /tmp/torus-swift-test-$target.log >> /tmp/torus-swift-test.log
    grep -q "Test run with .* passed" /tmp/torus-swift-test-$target.log || { echo "swift test: $target failed"; exit 1; }
  done

  [ "${TORUS_QUICK:-0}" = "1" ] && exit 0

  if [ "${TORUS_ASAN:-1}" = "1" ]; then
    step "core tests under AddressSanitizer (+LeakSanitizer)"
    # Children are started with posix_spawn (ChildProcess), not Foundation's
    # Process.run(), which overflowed a heap buffer under ASan
    # (findMaximumOpenFromProcSelfFD). The allocation check interposes malloc and
    # cannot run beside a sanitizer.
    # Only the core test target and what it needs is built (Package.swift's
    # TORUS_TEST_TARGETS): not the hub, swift-crypto or the other demos.
    TORUS_TEST_TARGETS=TorusTests TORUS_SANITIZER=address LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp" \
      timeout --kill-after=30 1200 swift test --sanitize=address --scratch-path .build-asan --filter '^TorusTests\.' \
        --skip 'allocationsPerMessage' 2>&1 | tee /tmp/torus-asan.log
    grep -q "Test run with .* passed" /tmp/torus-asan.log
  fi

  if [ "${TORUS_TSAN:-1}" = "1" ]; then
    step "the parts that cross threads under ThreadSanitizer (any report fails)"
    scripts/tsan.sh
  else
    skipped+=("ThreadSanitizer (TORUS_TSAN=0)")
  fi
fi

step "dead-peer harness (network namespaces, a real cut link): torus-echo, then torus-hub; in the background"
deadpeer_bin="$(mktemp -d "${TMPDIR:-/tmp}/torus-deadpeer-bin.XXXXXX")"
cp .build/debug/torus-echo .build/debug/torus-hub "$deadpeer_bin"/
scripts/deadpeer/harness.sh --server "$deadpeer_bin/torus-echo" --hub "$deadpeer_bin/torus-hub" \
  >/tmp/torus-deadpeer.log 2>&1 &
deadpeer_pid=$!
# If a later step fails first, the harness is stopped (its own trap removes its namespaces).
trap '[ -n "$deadpeer_pid" ] && kill "$deadpeer_pid" 2>/dev/null; rm -rf "$deadpeer_bin"' EXIT

if [ "${TORUS_SKIP_FUZZ:-0}" != "1" ] && [ -x scripts/fuzz-ci.sh ]; then
  step "fuzzers (${TORUS_FUZZ_SECONDS:-60} s per target; any crash, leak or timeout fails)"
  scripts/fuzz-ci.sh
elif [ "${TORUS_SKIP_FUZZ:-0}" = "1" ]; then
  skipped+=("fuzzers (TORUS_SKIP_FUZZ=1)")
fi

if [ "${TORUS_SKIP_DOCS:-0}" != "1" ]; then
  step "DocC documentation (warnings fail)"
  scripts/docs.sh
else
  skipped+=("DocC (TORUS_SKIP_DOCS=1)")
fi

if [ "${TORUS_SKIP_EXAMPLE:-0}" != "1" ]; then
  step "Examples/HelloTorus: a package of its own, built and checked with curl and Python clients"
  scripts/example.sh
else
  skipped+=("example (TORUS_SKIP_EXAMPLE=1)")
fi

# The dead-peer harness waits on the kernel's timers for most of its ~100 s and uses
# little CPU, so it ran beside the fuzzers, DocC and the example (in namespaces of its
# own, on copies of the two binaries so no later build can touch them): collect it.
step "dead-peer harness: its report (it ran in the background)"
rc=0
wait "$deadpeer_pid" || rc=$?
deadpeer_pid=""
cat /tmp/torus-deadpeer.log
if [ "$rc" -eq 77 ]; then
  echo "dead-peer harness SKIPPED: this machine does not allow network namespaces"
  skipped+=("dead-peer harness (no network namespaces here)")
elif [ "$rc" -ne 0 ]; then
  echo "dead-peer harness FAILED ($rc)"
  exit "$rc"
fi

# Release builds, once: torus-ws for Autobahn, torus-hub and torus-soak for the soaks
# and the scale step (plus matplotlib for the soak's plot).
run_soak=0 run_cluster_soak=0 run_autobahn=0
[ "${TORUS_SKIP_SOAK:-0}" != "1" ] && run_soak=1
[ "${TORUS_SKIP_CLUSTER_SOAK:-0}" != "1" ] && run_cluster_soak=1
[ "${TORUS_SKIP_AUTOBAHN:-0}" != "1" ] && run_autobahn=1
if [ "$run_soak$run_cluster_soak$run_autobahn" != "000" ]; then
  step "release build (torus-ws for Autobahn; torus-hub and torus-soak for the soaks)"
  if [ "$run_soak$run_cluster_soak" != "00" ]; then scripts/soak.sh --prepare; fi
  if [ "$run_autobahn" = 1 ]; then swift build -c release --product torus-ws; fi
fi
export TORUS_SOAK_PREPARED=1

# The two soaks (each a light, time-boxed load, together about one of the two cores)
# run in the background while Autobahn runs in the foreground at a lower priority
# (its Python driver is the other core's work): CI saves their two minutes. Each soak
# judges its own hubs' memory, ledgers and requests; their logs follow Autobahn's.
soak_pid="" cluster_soak_pid=""
if [ "$run_cluster_soak" = 1 ]; then
  # Three hub nodes sharing one Redis (started and stopped by soak.sh): routers
  # spread over the nodes and churning between them, callers and subscribers on
  # random nodes; every node's RSS slope is judged as the single hub's is.
  echo "== torus-hub cluster soak (3 nodes on Redis, ${TORUS_CLUSTER_SOAK_SECONDS:-120} s, release): in the background"
  scripts/soak.sh "${TORUS_CLUSTER_SOAK_SECONDS:-120}" --nodes 3 >/tmp/torus-cluster-soak.log 2>&1 &
  cluster_soak_pid=$!
else
  skipped+=("cluster soak (TORUS_SKIP_CLUSTER_SOAK=1)")
fi
if [ "$run_soak" = 1 ]; then
  echo "== torus-hub memory soak (${TORUS_SOAK_SECONDS:-120} s, release; fails on the verdict): in the background"
  scripts/soak.sh "${TORUS_SOAK_SECONDS:-120}" >/tmp/torus-soak.log 2>&1 &
  soak_pid=$!
else
  skipped+=("soak (TORUS_SKIP_SOAK=1)")
fi
# If a later step fails first, the soaks are stopped too (soak.sh's trap stops its Redis).
trap '[ -n "$deadpeer_pid" ] && kill "$deadpeer_pid" 2>/dev/null; rm -rf "$deadpeer_bin";
      for p in $soak_pid $cluster_soak_pid; do kill "$p" 2>/dev/null; done' EXIT

# Autobahn runs niced only while a soak shares the machine with it.
autobahn_nice=()
[ -n "$soak_pid$cluster_soak_pid" ] && autobahn_nice=(nice -n 10)
if [ "$run_autobahn" = 1 ]; then
  # Twice: over ws:// and over wss:// (torus-ws with a certificate made for the run).
  # Full mode: every case over ws:// (517 cases, ~10 minutes: 12.*/13.* compression
  # cases are paced by the Python client), the ci subset over wss://.
  # TORUS_AUTOBAHN_MODE=ci: over ws:// every case but compression (12.*, 13.*:
  # ~15 s), over wss:// the ci subset with its compression cases (~80 s): together
  # every group of cases, each once, TLS included.
  mode="${TORUS_AUTOBAHN_MODE:-full}"
  for scheme in ws wss; do
    rc=0
    if [ "$scheme" = ws ]; then
      step "Autobahn|Testsuite against torus-ws over ws:// ($mode mode)"
      if [ "$mode" = ci ]; then
        "${autobahn_nice[@]}" scripts/autobahn.sh ci '*' '12.*,13.*' || rc=$?
      else
        "${autobahn_nice[@]}" scripts/autobahn.sh "$mode" || rc=$?
      fi
    else
      step "Autobahn|Testsuite against torus-ws over wss:// (ci mode)"
      TORUS_AUTOBAHN_TLS=1 "${autobahn_nice[@]}" scripts/autobahn.sh ci || rc=$?
    fi
    if [ "$rc" -eq 77 ]; then
      skipped+=("Autobahn over $scheme:// (its driver is not beside this checkout; set AUTOBAHN_DIR)")
    elif [ "$rc" -ne 0 ]; then
      echo "Autobahn over $scheme:// FAILED ($rc)"
      exit "$rc"
    fi
  done
else
  skipped+=("Autobahn (TORUS_SKIP_AUTOBAHN=1)")
fi

if [ -n "$soak_pid" ]; then
  step "torus-hub memory soak: the rest of its run, and its report"
  rc=0
  wait "$soak_pid" || rc=$?
  soak_pid=""
  cat /tmp/torus-soak.log
  if [ "$rc" -ne 0 ]; then
    echo "soak FAILED ($rc)"
    exit "$rc"
  fi
fi
if [ -n "$cluster_soak_pid" ]; then
  step "torus-hub cluster soak: its report"
  rc=0
  wait "$cluster_soak_pid" || rc=$?
  cluster_soak_pid=""
  sed -n '/^# torus-soak report/,$p' /tmp/torus-cluster-soak.log
  if [ "$rc" -ne 0 ]; then
    tail -50 /tmp/torus-cluster-soak.log
    echo "cluster soak FAILED ($rc)"
    exit "$rc"
  fi
  # scripts/run-cluster.sh as a user runs it, on one Redis and on a Redis Cluster
  # (~20 s): listing and events across nodes, clean stop with quiescent ledgers.
  step "run-cluster.sh smoke (2 nodes; one Redis, then a three-master Redis Cluster)"
  scripts/cluster-smoke.sh
fi

if [ "${TORUS_SKIP_SCALE:-0}" != "1" ]; then
  # Release, after the soak (which built the release torus-hub already): 10,000 idle
  # links (half router links, half /web), one broadcast, 1,000 commands (~1 minute).
  step "torus-hub scale step (10,000 links, broadcast, 1,000 commands; release; fails on any loss)"
  rc=0
  scripts/scale-ci.sh || rc=$?
  if [ "$rc" -eq 77 ]; then
    skipped+=("hub scale step (descriptor limit too low here)")
  elif [ "$rc" -ne 0 ]; then
    echo "hub scale step FAILED ($rc)"
    exit "$rc"
  fi
else
  skipped+=("hub scale step (TORUS_SKIP_SCALE=1)")
fi

step "test.sh: every step that ran passed (in $(( $(date +%s) - run_start )) s)"
for t in "${timings[@]}"; do echo "   $t"; done
for s in ${skipped[@]+"${skipped[@]}"}; do echo "   skipped: $s"; done
