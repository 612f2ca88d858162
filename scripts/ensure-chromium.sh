#!/usr/bin/env bash
# Makes sure Debian's chromium exists: the inspector's browser test drives it headless through
# playwright-core (which never downloads a browser of its own). Present → fine; root with apt-get
# → installed; else a message.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [[ -x $CHROMIUM ]]; then echo "$CHROMIUM"; exit 0; fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "chromium not found: installing Debian's chromium package" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core) >&2
  [[ -x $CHROMIUM ]] && { echo "$CHROMIUM"; exit 0; }
fi
cat >&2 <<'MSG'
chromium is required for the inspector's browser test (test/integration/inspector-browser.test.ts).
  Debian/Ubuntu:  sudo apt-get install chromium
  (that test is skipped until it is installed)
MSG
exit 1
