#!/usr/bin/env bash
# Renders RUN_DIR/report.html in headless Chromium, fails if any <img> did not
# load, and takes a full-page screenshot.
#
#   tests/io/report_screenshot.sh RUN_DIR [SCREENSHOT.png]
#
# Needs chromium (Debian: apt-get install chromium). RUN_DIR must hold a
# report.html written by fsa::io::write_report; to make one from the unit
# test's synthetic run:
#   FSA_REPORT_TEST_OUT=/tmp/fsa_report ./fsa_tests --gtest_filter='ReportTest.FullRun*'
#   tests/io/report_screenshot.sh /tmp/fsa_report
# Prints "images: N total, M loaded" and "screenshot: PATH"; exits 1 when an
# image is broken or the page did not load, 2 on a usage or setup problem.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 RUN_DIR [SCREENSHOT.png]" >&2
  exit 2
fi
run_dir=$(cd "$1" && pwd)
page="$run_dir/report.html"
shot=${2:-$run_dir/report_screenshot.png}
[[ -f "$page" ]] || { echo "no report.html in $run_dir" >&2; exit 2; }
browser=${CHROMIUM:-}
if [[ -z "$browser" ]]; then
  for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null; then browser=$b; break; fi
  done
fi
[[ -n "$browser" ]] || { echo "chromium not found (apt-get install chromium)" >&2; exit 2; }

# A copy of the page beside the original (so relative <img src> resolve the
# same way) with a script that, once everything has loaded, writes the image
# counts and the page height into the DOM for --dump-dom to show.
probe="$run_dir/.report_probe_$$.html"
profile=$(mktemp -d)
trap 'rm -rf "$probe" "$profile"' EXIT
probe_script='<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  var out = document.createElement("pre");
  out.id = "fsa-probe";
  out.textContent = "FSA_PROBE total=" + imgs.length + " loaded=" + (imgs.length - broken.length) +
      " height=" + document.documentElement.scrollHeight +
      " broken=" + broken.map(function (i) { return i.getAttribute("src"); }).join(",") + " END";
  document.body.appendChild(out);
});
</script>'
{
  sed 's#</body>##' "$page"
  printf '%s\n</body>\n' "$probe_script"
} >"$probe"

flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run
       --user-data-dir="$profile" --allow-file-access-from-files
       --virtual-time-budget=10000)
dom=$("$browser" "${flags[@]}" --window-size=1280,800 --dump-dom "file://$probe" 2>/dev/null || true)
line=$(grep -o 'FSA_PROBE [^<]* END' <<<"$dom" || true)
if [[ -z "$line" ]]; then
  echo "the page did not load in $browser (no probe result in the DOM)" >&2
  exit 1
fi
total=$(sed -E 's/.*total=([0-9]+).*/\1/' <<<"$line")
loaded=$(sed -E 's/.*loaded=([0-9]+).*/\1/' <<<"$line")
height=$(sed -E 's/.*height=([0-9]+).*/\1/' <<<"$line")
broken=$(sed -E 's/.*broken=(.*) END/\1/' <<<"$line")
echo "images: $total total, $loaded loaded"

# Full page: a window as tall as the page (capped; Chromium limits textures).
height=$(( height < 600 ? 600 : (height > 16000 ? 16000 : height) ))
rm -f "$shot"
"$browser" "${flags[@]}" --window-size=1280,"$height" --screenshot="$shot" "file://$page" \
  >/dev/null 2>&1 || true
if [[ ! -s "$shot" ]]; then
  echo "no screenshot was written to $shot" >&2
  exit 1
fi
echo "screenshot: $shot (1280x$height)"

if [[ "$loaded" != "$total" ]]; then
  echo "broken images: $broken" >&2
  exit 1
fi
