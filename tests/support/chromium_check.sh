#!/usr/bin/env bash
# Renders an HTML report in headless Chromium and fails if the page logs
# JavaScript console errors or no screenshot comes out.
#
#   tests/support/chromium_check.sh FILE.html OUT.png
#   tests/support/chromium_check.sh --dump-dom FILE.html OUT.html
#
# With --dump-dom it writes the DOM as it stands after the page has loaded
# and its scripts (and any error handlers of broken images) have run, so a
# test can see whether planted markup executed.
#
# Installs Debian's `chromium` when it is missing (needs root and network
# access to the Debian mirrors). The browser log goes to OUT.png.log so a
# failure can be read afterwards. Exit codes: 0 ok, 1 bad page, 2 usage or
# set-up problem.
set -euo pipefail

dump_dom=false
if [[ ${1:-} == --dump-dom ]]; then
    dump_dom=true
    shift
fi
if [[ $# -ne 2 ]]; then
    echo "usage: $0 [--dump-dom] FILE.html OUT" >&2
    exit 2
fi
html=$(realpath -- "$1")
out=$2
log="$out.log"

if [[ ! -f "$html" ]]; then
    echo "chromium_check: no such file: $1" >&2
    exit 2
fi

find_chromium() {
    command -v chromium || command -v chromium-browser || command -v google-chrome || true
}

browser=$(find_chromium)
if [[ -z "$browser" ]]; then
    echo "chromium_check: installing chromium" >&2
    # Quiet installs; the apt output is only interesting when it fails.
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } >"$log.apt" 2>&1; then
        tail -n 20 "$log.apt" >&2
        echo "chromium_check: could not install chromium" >&2
        exit 2
    fi
    browser=$(find_chromium)
fi

rm -f -- "$out"
# The flags keep Chromium from reaching the network on its own (updates,
# sync, first-run pages), so any network use in the log is the page's.
# A hung page should not hang the test suite, hence the timeout.
flags=(--headless --no-sandbox --disable-gpu
    --disable-background-networking --disable-component-update --disable-sync
    --no-first-run)
if $dump_dom; then
    # The virtual time budget lets timers and image error events fire
    # before the DOM is written out.
    status=0
    timeout 120 "$browser" "${flags[@]}" --virtual-time-budget=3000 --dump-dom \
        "file://$html" >"$out" 2>"$log" || status=$?
    if [[ ! -s "$out" ]]; then
        echo "chromium_check: no DOM dumped (chromium exit $status); log: $log" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    echo "chromium_check: ok, DOM at $out"
    exit 0
fi
status=0
timeout 120 "$browser" "${flags[@]}" --enable-logging=stderr --v=0 \
    --screenshot="$(realpath -m -- "$out")" --window-size=1200,1600 \
    "file://$html" >"$log" 2>&1 || status=$?

if [[ ! -s "$out" ]]; then
    echo "chromium_check: no screenshot written (chromium exit $status); log: $log" >&2
    tail -n 20 "$log" >&2
    exit 1
fi

# Chromium reports page console messages as lines containing "CONSOLE".
console_errors=$(grep -E 'CONSOLE' "$log" | grep -E 'ERROR|Uncaught' || true)
if [[ -n "$console_errors" ]]; then
    echo "chromium_check: JavaScript console errors in $1:" >&2
    echo "$console_errors" >&2
    exit 1
fi

echo "chromium_check: ok, screenshot at $out"
