#!/usr/bin/env bash
# The parts of Torus that cross threads, under ThreadSanitizer. Any report fails.
#
# Usage: scripts/tsan.sh                 build (into .build-tsan) and run
#        TORUS_TSAN_FILTER=REGEX scripts/tsan.sh   another selection of tests
#
# What runs (swift test --filter, a regex over "Target.Suite/test"):
#   CrossThreadTests      the cross-thread paths hammered on purpose: execute from 8
#                         threads, group start/shutdown ×50 (two stoppers at once),
#                         execute racing shutdown, 1,000 tasks preferring a loop,
#                         an actor on the loop, the blocking pool, ledger snapshots
#                         (sync, async) and the metrics export while loops work,
#                         LoopShards from 8 threads, Inbox cancellation racing
#                         delivery, AsyncConnection reader/writer tasks on the
#                         global executor
#   LoopTests             foreign execute, executor preference, cancelled sleeps and
#                         reads, offload, shutdown with operations in flight
#   InboxTests            the consumer on other tasks, cancellation
#   EchoTests             200 clients in tasks preferring two loops
#   LedgerTests           async snapshot and swift-metrics export
#   ClusterTests, ClusterOnRedisClusterTests (TorusHub)
#                         hub nodes on Redis: events relayed from router loops to
#                         the home loop in batches, links held and released by the
#                         relay's backpressure, Redis callbacks, lookups from tasks
#   ReadmeExamplesTests   the three faces, including loop.run from a test task
#   ConnectionTests       AsyncConnection from test tasks, peer resets, Unix sockets
#   TorusRedisTests       the Redis client: callbacks on the loop, async commands from
#                         test tasks, RedisClient's reconnecting task and its Mutex
#                         state (against real redis-server processes)
# Not selected: the pure data-structure suites (RingBuffer, WriteQueue: one thread),
# SubmitPressure and Resources (one loop each, their cross-thread parts are the same
# execute/run paths as above; Resources also spawns torus-echo), and the HTTP,
# WebSocket and hub targets (they sit on the same core paths; TORUS_TSAN_FILTER can
# add them).
#
# TORUS_SANITIZER=thread, as scripts/test.sh sets TORUS_SANITIZER=address for the ASan
# run: tests that cannot run beside a sanitizer skip themselves on it (the
# torus-alloc-check test interposes malloc, which a sanitizer runtime already
# does). Tests that spawn a demo binary run the one built into .build-tsan, itself
# built with TSan (halt_on_error reaches it through the inherited TSAN_OPTIONS).
#
# TSAN_OPTIONS: halt_on_error=1 (stop at the first report), exitcode=66 (a report is
# exit status 66, never mistaken for a test failure), second_deadlock_stack=1 (both
# stacks of a lock-order report), and the suppressions in .ci/tsan.supp (empty: no
# report so far came from third-party or runtime code alone; see the file).
#
# Two gaps in the Swift runtime, not in Torus, that TSan would otherwise report;
# .ci/tsan-runtime.c (built here, LD_PRELOADed for the run) annotates both, and
# nothing is suppressed (see its comment):
# - Synchronization.Mutex: its contended slow paths (libswiftSynchronization.so,
#   not instrumented) hand the lock over through futex syscalls TSan cannot see, so
#   every contended Mutex looked like a race.
# - A continuation resumed *before* its task reached the await (the loop was
#   faster than the awaiting thread), or while the task was reaching it, lets the
#   task go on inline without the runtime's __tsan_acquire (swift_continuation_await
#   has none on those two paths; the resumer did its __tsan_release). An
#   AsyncConnection made on the loop and read by the task that connected was
#   reported: once in ResourceTests, then in two CI runs of this selection. The
#   shim makes every continuation resume through an acquiring trampoline. Because
#   it depends on the runtime's continuation layout, a reproducer
#   (.ci/tsan-continuation-check.swift: 50 early resumes, then 20,000 racing ones)
#   runs first: without the shim it must be reported (else the gap is gone and the
#   check says so), with it not (else the shim no longer fits the runtime: FAILED).
#
# Time (2 shared cores, Swift 6.3.1): the first TSan build of the package is a full
# build, ~12 minutes (722 s); after a change, 20-50 s. The run takes 45-100 s with
# the machine's load, most of it the 200-client × 1 MiB echo (EchoTests, 40-90 s);
# the cross-thread suite ~10 s.
set -euo pipefail
cd "$(dirname "$0")/.."

filter="${TORUS_TSAN_FILTER:-TorusTests\.(CrossThreadTests|LoopTests|InboxTests|EchoTests|LedgerTests|ReadmeExamplesTests|ConnectionTests|AllocatorTrimTests)/|TorusRedisTests\.|TorusHubTests\.(ClusterTests|ClusterOnRedisClusterTests)/}"
log="${TORUS_TSAN_LOG:-/tmp/torus-tsan.log}"
# The default selection needs three test targets: build only those and what they use
# (Package.swift's TORUS_TEST_TARGETS). Another filter builds the whole package.
if [ -z "${TORUS_TSAN_FILTER:-}" ]; then
  export TORUS_TEST_TARGETS=TorusTests,TorusRedisTests,TorusHubTests
fi
export TORUS_SANITIZER=thread
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$PWD/.ci/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

echo "== ThreadSanitizer: swift test --sanitize=thread --scratch-path .build-tsan"
echo "   filter:       $filter"
echo "   targets:      ${TORUS_TEST_TARGETS:-the whole package}"
echo "   TSAN_OPTIONS: $TSAN_OPTIONS"
echo "   log:          $log"

start=$(date +%s)
echo "== build (the first is a full build)"
if ! swift build --build-tests --sanitize=thread --scratch-path .build-tsan >"$log.build" 2>&1; then
  echo "TSan build FAILED:"; grep -E 'error:' "$log.build" | head -n 20; tail -n 5 "$log.build"; exit 1
fi
tail -n 3 "$log.build"
built=$(date +%s)
echo "   built in $((built - start)) s"

# The runtime shim (see above and its comment): built here, preloaded for the run
# only, and checked first against the reproducer.
shim=.build-tsan/libtorus-tsan-runtime.so
clang_bin="$(dirname "$(readlink -f "$(command -v swift)")")/clang"
[ -x "$clang_bin" ] || clang_bin=clang
"$clang_bin" -shared -fPIC -O2 -Wall -o "$shim" .ci/tsan-runtime.c -ldl
echo "   LD_PRELOAD:   $shim (Mutex slow paths and continuations resumed early annotated for TSan)"

check=.build-tsan/tsan-continuation-check
swiftc -parse-as-library -sanitize=thread -O -o "$check" .ci/tsan-continuation-check.swift
without=$(TSAN_OPTIONS="halt_on_error=1:exitcode=66" "$check" 2>&1 | grep -c '^WARNING: ThreadSanitizer' || true)
check_rc=0
with=$(LD_PRELOAD="$PWD/$shim" TSAN_OPTIONS="halt_on_error=1:exitcode=66" "$check" 2>&1) || check_rc=$?
if [ "$check_rc" -ne 0 ] || ! grep -q "continuation check: 20050 handoffs" <<<"$with"; then
  echo "TSan runtime shim FAILED its reproducer (exit $check_rc): it no longer fits this Swift runtime"
  echo "(see .ci/tsan-runtime.c, part 2). Its output:"
  head -n 40 <<<"$with"
  exit 1
fi
if [ "$without" -eq 0 ]; then
  echo "   continuation check: no report even without the shim (this runtime acquires on that path itself)"
else
  echo "   continuation check: reported without the shim, clean with it"
fi

echo "== run"
rc=0
LD_PRELOAD="$PWD/$shim${LD_PRELOAD:+:$LD_PRELOAD}" swift test --skip-build --sanitize=thread --scratch-path .build-tsan --filter "$filter" >"$log" 2>&1 || rc=$?
end=$(date +%s)

# What ran, test by test (Swift Testing prints one line per test).
grep -E '^[✔✘↳◇] Test "|^✔ Suite|^✘ Suite|Test run with' "$log" | grep -vE '^◇' || true

reports=$(grep -c '^WARNING: ThreadSanitizer' "$log" || true)
echo "== ThreadSanitizer: $reports report(s), swift test exit $rc, run $((end - built)) s (build $((built - start)) s)"
if [ "$reports" -ne 0 ] || [ "$rc" -eq 66 ]; then
  echo "ThreadSanitizer FAILED: the first report:"
  sed -n '/^WARNING: ThreadSanitizer/,/^SUMMARY: ThreadSanitizer/p' "$log" | head -n 120
  exit 66
fi
if [ "$rc" -ne 0 ] || ! grep -q "Test run with .* passed" "$log"; then
  echo "TSan run FAILED (exit $rc) without a report: a test failed or crashed; the end of $log:"
  tail -n 60 "$log"
  exit "$(( rc == 0 ? 1 : rc ))"
fi
echo "== ThreadSanitizer: no report"
