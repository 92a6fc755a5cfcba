#!/usr/bin/env bash
# README command 2: install everything the tests need on a fresh Debian 12 machine,
# then run the whole suite (format, lints, unit, integration and topology tests).
#
# Installs only what is missing, so a second run starts testing at once. Topology tests
# need root; run as root (CI does) or they print why they skip. APIVIP_REQUIRE_NETNS=1
# turns those skips into failures.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

# Debian packages: real peers and tools the tests and benchmarks start.
packages=(
  iproute2 iputils-ping nftables procps curl ca-certificates
  util-linux                # setpriv: run apivip as a plain user with ambient capabilities
  etcd-server etcd-client   # etcd health check against a real member
  haproxy nginx-light wrk iperf3  # proxy baselines (benchmarks)
  keepalived tcpdump        # VRRP interop, wire captures
  bind9 bind9-dnsutils      # DNS updates
  prometheus                # promtool, scraping
  systemd                   # systemd-analyze verify / security on deploy/apivip.service
  python3-venv              # a venv for PyPI tools (kubernetes-validate)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  # Packaged services must not start on install (policy-rc.d 101): tests start their own.
  $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $SUDO rm -f /usr/sbin/policy-rc.d
else
  log "Debian packages: all present"
fi

# PyPI tools, in a venv inside the repository's ignored target/ (tests look there).
venv=target/tools/venv
kubernetes_validate_version=1.37.0  # ships the JSON schemas of Kubernetes 1.25 to 1.37
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$kubernetes_validate_version"; then
  log "installing kubernetes-validate $kubernetes_validate_version into $venv"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q "kubernetes-validate==$kubernetes_validate_version"
else
  log "kubernetes-validate $kubernetes_validate_version: present"
fi

# kubectl 1.20 (Debian kubernetes-client), unpacked into target/ (tests look there) rather
# than installed: another package (e.g. a newer `kubectl`) may own /usr/bin/kubectl.
kubectl_dir=target/tools/kubernetes-client
if ! "$kubectl_dir/usr/bin/kubectl" version --client >/dev/null 2>&1; then
  log "unpacking Debian kubernetes-client into $kubectl_dir"
  deb_dir=$(mktemp -d)
  chmod 777 "$deb_dir"  # apt-get download runs as the _apt user
  if ! (cd "$deb_dir" && apt-get download -qq kubernetes-client); then
    $SUDO apt-get update -qq
    (cd "$deb_dir" && apt-get download -qq kubernetes-client)
  fi
  rm -rf "$kubectl_dir"
  mkdir -p "$kubectl_dir"
  dpkg -x "$deb_dir"/kubernetes-client_*.deb "$kubectl_dir"
  rm -rf "$deb_dir"
  "$kubectl_dir/usr/bin/kubectl" version --client
else
  log "kubernetes-client: present ($("$kubectl_dir/usr/bin/kubectl" version --client --short 2>/dev/null))"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (rustup) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

# A fresh CI build needs about 1.5 GB under target/; say what there is, so a full disk
# reads as such in the log. Incremental builds only cost space on a one-shot run.
log "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free under $(pwd -P | sed 's|.*/||')"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

log "cargo test"
# Raise the descriptor limit for the tests that hold many connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Unit, integration and doc tests (benchmarks are not run here; clippy built them).
cargo test --locked
