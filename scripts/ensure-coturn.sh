#!/usr/bin/env bash
# Makes sure Debian's coturn (turnserver, turnutils_stunclient) exists: the games STUN tests check
# interoperability against it. On PATH → fine; root with apt-get → installed; else a message.
set -euo pipefail
have_it() { command -v turnutils_stunclient >/dev/null 2>&1 && command -v turnserver >/dev/null 2>&1; }
if have_it; then command -v turnserver; exit 0; fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "coturn not found: installing Debian's coturn package" >&2
  # The package's service must not start: the tests run their own turnserver on a free port.
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq coturn) >&2
  have_it && { command -v turnserver; exit 0; }
fi
cat >&2 <<'MSG'
coturn (turnserver, turnutils_stunclient) is required for the STUN interoperability tests.
  Debian/Ubuntu:  sudo apt-get install coturn
  (the tests that need it are skipped until it is installed)
MSG
exit 1
