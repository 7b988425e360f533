#!/usr/bin/env bash
# Renders a report page (campaign or dashboard HTML) to PNG with headless Chromium and checks
# that its charts were drawn.
#
#   reports/render_check.sh PAGE.html OUT.png [WIDTHxHEIGHT]      (default 1400x2000)
#
# Checks, after the page's scripts ran:
#   * no uncaught JavaScript error was logged to the console;
#   * every <canvas> was sized by Chart.js (a canvas Chart.js never touched keeps no style);
#   * the "Chart.js failed to load" banner stayed hidden.
# Exit status: 0 rendered and checked, 1 usage / Chromium missing, 2 screenshot failed,
# 3 a check failed (the PNG is still written for inspection).
# Environment: CHROMIUM overrides the browser binary (default: chromium, chromium-browser,
# google-chrome, whichever is found first).
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 1
fi
page="$1"
png="$2"
size="${3:-1400x2000}"
if [[ ! "$size" =~ ^([0-9]+)x([0-9]+)$ ]]; then
  echo "render_check: size must look like 1400x2000, got '$size'" >&2
  exit 1
fi
width="${BASH_REMATCH[1]}"
height="${BASH_REMATCH[2]}"
if [[ ! -f "$page" ]]; then
  echo "render_check: no such file: $page" >&2
  exit 1
fi

browser="${CHROMIUM:-}"
if [[ -z "$browser" ]]; then
  for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
  done
fi
if [[ -z "$browser" ]]; then
  echo "render_check: no Chromium found (apt-get install chromium, or set CHROMIUM)" >&2
  exit 1
fi

url="file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
profile="$(mktemp -d)"
log="$(mktemp)"
dom="$(mktemp)"
trap 'rm -rf "$profile" "$log" "$dom"' EXIT

# Flags: no sandbox (containers, root), no GPU, fresh profile; a virtual time budget lets
# the page's scripts finish before the capture.
common=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run
        --user-data-dir="$profile" --virtual-time-budget=10000
        --run-all-compositor-stages-before-draw --enable-logging=stderr --v=0)

rm -f "$png"
"$browser" "${common[@]}" --window-size="$width,$height" --screenshot="$png" "$url" \
  >/dev/null 2>"$log" || true
if [[ ! -s "$png" ]]; then
  echo "render_check: Chromium wrote no screenshot; its log:" >&2
  tail -n 20 "$log" >&2
  exit 2
fi
"$browser" "${common[@]}" --window-size="$width,$height" --dump-dom "$url" >"$dom" 2>>"$log" || true

status=0
if grep -E 'Uncaught|SyntaxError|ReferenceError|TypeError' "$log" | grep -qi console; then
  echo "render_check: JavaScript errors:" >&2
  grep -E 'Uncaught|SyntaxError|ReferenceError|TypeError' "$log" | grep -i console >&2
  status=3
fi
canvases=$( (grep -o '<canvas[^>]*>' "$dom" || true) | wc -l)
drawn=$( (grep -o '<canvas[^>]*style="[^"]*"[^>]*>' "$dom" || true) | wc -l)
if [[ "$drawn" -lt "$canvases" ]]; then
  echo "render_check: only $drawn of $canvases charts were drawn" >&2
  status=3
fi
if grep -q 'id="chart-error"[^>]*style="display: block' "$dom"; then
  echo "render_check: the page reports that Chart.js failed to load" >&2
  status=3
fi
echo "render_check: $png (${width}x${height}), $drawn/$canvases charts drawn"
exit "$status"
