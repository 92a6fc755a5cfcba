#!/usr/bin/env bash
# Coverage-guided fuzzing of apivip on stable Rust with AFL++ (`cargo afl`).
#
# Usage: scripts/fuzz.sh [-n EXECS | -t SECONDS] [-m] [TARGET...]
#
#   TARGET       packet, machine, config or dns (default: all four, one after another)
#   -n EXECS     stop each target after about EXECS executions (default 10000000)
#   -t SECONDS   stop each target after SECONDS instead
#   -m           then minimize: the corpus fuzz/corpus/TARGET is replaced by the smallest
#                set of its files and the fuzzer's finds that keeps their coverage
#                (afl-cmin -e: edge coverage, hit counts ignored; new files are named by
#                their SHA-1, seeds keep their names)
#
# Environment: FUZZ_OUT (AFL++ output, default TARGET_DIR/afl-out), CARGO_TARGET_DIR.
#
# The targets are the functions of src/testkit/fuzz.rs, each built into a tiny binary of
# the fuzz/ package (its own workspace: the main build never compiles afl). Inputs start
# from fuzz/corpus/TARGET; the test suite replays those files (tests/fuzz_corpus.rs).
# Each target runs alone at nice 10 (one core). At the end a line per target gives the
# executions, executions per second, run time, crashes and hangs; the inputs that
# crashed are in FUZZ_OUT/TARGET/default/crashes/ (replay one with
# `TARGET_DIR/release/TARGET < FILE`). A crash makes the script exit 1.
#
# Installs what is missing first: Debian build-essential (AFL++ is built from source),
# cargo-afl, and AFL++ itself for the current Rust toolchain (`cargo afl config --build`).
# No nightly Rust: cargo-afl instruments with the stable compiler's sancov pass.
set -euo pipefail
cd "$(dirname "$0")/.."

execs=10000000
seconds=
minimize=
while getopts "n:t:m" opt; do
  case $opt in
    n) execs=$OPTARG ;;
    t) seconds=$OPTARG ;;
    m) minimize=1 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
((${#targets[@]})) || targets=(packet machine config dns)
for t in "${targets[@]}"; do
  [ -d "fuzz/corpus/$t" ] || { echo "unknown target $t (no fuzz/corpus/$t)" >&2; exit 2; }
done

log() { printf '\n== %s\n' "$*"; }

# Debian packages: a C toolchain to build AFL++.
missing=()
for p in build-essential; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cargo-afl, of the afl version fuzz/Cargo.lock pins (they must match).
afl_version=$(sed -n '/^name = "afl"$/{n;s/^version = "\(.*\)"$/\1/p}' fuzz/Cargo.lock)
if ! cargo afl --version 2>/dev/null | grep -q "^cargo-afl $afl_version"; then
  log "installing cargo-afl $afl_version"
  cargo install --locked cargo-afl --version "$afl_version"
fi
# AFL++ itself, built once per Rust toolchain.
if ! out=$(cargo afl config --build 2>&1); then
  grep -q "already built" <<<"$out" || { echo "$out" >&2; exit 1; }
fi

# Where cargo-afl built AFL++ for this toolchain (afl-cmin.bash is taken from there).
rustc_id=$(rustc -vV | sed -n 's/^release: //p')-$(rustc -vV | sed -n 's/^commit-hash: \(.......\).*/\1/p')
afl_bin=${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs/rustc-$rustc_id/afl.rs-$afl_version/afl/bin
[ -x "$afl_bin/afl-fuzz" ] || { echo "AFL++ not found in $afl_bin" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/fuzz/target}
out_root=${FUZZ_OUT:-$CARGO_TARGET_DIR/afl-out}
log "cargo afl build --release (fuzz/)"
(cd fuzz && cargo afl build --release --locked)

# Unattended AFL++ on a shared machine: no screen, no CPU pinning, no cpufreq checks.
export AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1

stat() { sed -n "s/^$1 *: //p" "$2"; }
summary=()
crashed=0
for t in "${targets[@]}"; do
  bin=$CARGO_TARGET_DIR/release/$t
  out=$out_root/$t
  rm -rf "$out"
  mkdir -p "$out"
  # Inputs up to 8 KiB (a VRRP datagram is at most 4 KiB, a config a few); the machine
  # target's inputs are event lists: 2 KiB is hundreds of events.
  maxlen=8192
  [ "$t" = machine ] && maxlen=2048
  args=(-i "fuzz/corpus/$t" -o "$out" -G "$maxlen")
  if [ -n "$seconds" ]; then
    args+=(-V "$seconds")
    budget="$seconds s"
  else
    args+=(-E "$execs")
    budget="$execs executions"
  fi
  [ -f "fuzz/dict/$t.dict" ] && args+=(-x "fuzz/dict/$t.dict")
  log "fuzzing $t ($budget); log: $out/afl.log"
  if ! nice -n 10 cargo afl fuzz "${args[@]}" -- "$bin" >"$out/afl.log" 2>&1; then
    tail -30 "$out/afl.log" >&2
    echo "afl-fuzz failed for $t" >&2
    exit 1
  fi
  stats=$out/default/fuzzer_stats
  crashes=$(stat saved_crashes "$stats")
  line=$(printf '%-8s %12s execs  %8s exec/s  %6s s  %s crashes  %s hangs  %s in queue' "$t" \
    "$(stat execs_done "$stats")" "$(stat execs_per_sec "$stats")" "$(stat run_time "$stats")" \
    "$crashes" "$(stat saved_hangs "$stats")" "$(stat corpus_count "$stats")")
  summary+=("$line")
  echo "$line"
  if [ "$crashes" != 0 ]; then
    crashed=1
    ls "$out/default/crashes"
    continue
  fi
  if [ -n "$minimize" ]; then
    log "minimizing fuzz/corpus/$t"
    all=$out/cmin-in
    min=$out/cmin-out
    mkdir -p "$all"
    cp "fuzz/corpus/$t"/* "$all/"
    for f in "$out"/default/queue/id:*; do
      cp "$f" "$all/$(sha1sum "$f" | cut -c1-16)"
    done
    # afl-cmin.bash: AFL++ 4.40c's Python afl-cmin (what `cargo afl cmin` runs) records
    # no coverage from afl.rs persistent-mode binaries and keeps nothing.
    PATH="$afl_bin:$PATH" nice -n 10 "$afl_bin/afl-cmin.bash" -e -i "$all" -o "$min" -- "$bin" >"$out/cmin.log" 2>&1 ||
      { tail -c 2000 "$out/cmin.log" >&2; exit 1; }
    if ! ls "$min"/* >/dev/null 2>&1; then
      echo "afl-cmin kept no file; fuzz/corpus/$t left as it was (see $out/cmin.log)" >&2
      exit 1
    fi
    rm -f "fuzz/corpus/$t"/*
    cp "$min"/* "fuzz/corpus/$t/"
    echo "fuzz/corpus/$t: $(ls "fuzz/corpus/$t" | wc -l) files, $(du -sh "fuzz/corpus/$t" | cut -f1)"
  fi
done

log "summary"
printf '%s\n' "${summary[@]}"
exit "$crashed"
