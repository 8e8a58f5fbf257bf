#!/usr/bin/env bash
# Install what CivicPulse needs on a fresh Debian machine: system packages
# (Java and Maven for the Kafka broker, PostgreSQL, kcat, Prometheus) and the
# Python package with its dev extras. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v kcat >/dev/null || need_apt+=(kcat)
# `civicpulse infra up --secure` makes its CA and certificates with openssl.
command -v openssl >/dev/null || need_apt+=(openssl)
command -v promtool >/dev/null || need_apt+=(prometheus)
{ command -v amtool && { command -v prometheus-alertmanager || command -v alertmanager; }; } >/dev/null \
    || need_apt+=(prometheus-alertmanager)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need_apt+=(postgresql)
# The feedback form's real-browser test.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# The official AsyncAPI parser checks shared/schemas/asyncapi.json (tools/asyncapi/).
command -v node >/dev/null || need_apt+=(nodejs)
# The metrics dashboard's chart and accessibility libraries come from the npm registry.
command -v npm >/dev/null || need_apt+=(npm)

if ((${#need_apt[@]})); then
    echo "bootstrap: installing system packages: ${need_apt[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # Debian's prometheus package starts a server on :9090; we run our own.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
        $sudo systemctl stop prometheus || true
    fi
    # Likewise its Alertmanager on :9093.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus-alertmanager 2>/dev/null; then
        $sudo systemctl stop prometheus-alertmanager || true
    fi
fi

stamp=.civicpulse/pip-installed
mkdir -p .civicpulse
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing the Python package and its dev extras" >&2
    python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi

# The AsyncAPI parser, pinned by tools/asyncapi/package-lock.json; install
# scripts are not needed (and one only reports telemetry).
if [ ! -f tools/asyncapi/node_modules/.package-lock.json ] \
    || [ tools/asyncapi/package-lock.json -nt tools/asyncapi/node_modules/.package-lock.json ]; then
    echo "bootstrap: installing the AsyncAPI parser (npm ci in tools/asyncapi)" >&2
    (cd tools/asyncapi && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# vega, vega-lite, vega-embed (the dashboard's charts) and axe-core (its accessibility
# test), pinned by the lock file, served by the metrics service from node_modules.
# A folder of its own, apart from tools/asyncapi: each has its own lock file.
assets=services/metrics/dashboard/assets
if [ ! -f "$assets/node_modules/.package-lock.json" ] \
    || [ "$assets/package-lock.json" -nt "$assets/node_modules/.package-lock.json" ]; then
    echo "bootstrap: installing the dashboard's browser libraries (npm ci in $assets)" >&2
    (cd "$assets" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
