#!/usr/bin/env bash
# Makes sure a haproxy binary exists (the relay bench's anchor): on PATH, in /usr/sbin, or
# installed from Debian's packages when we are root. Prints the path it found.
set -euo pipefail
find_it() {
  command -v haproxy 2>/dev/null && return 0
  for p in /usr/sbin/haproxy /usr/local/sbin/haproxy /usr/local/bin/haproxy; do [[ -x $p ]] && { echo "$p"; return 0; }; done
  return 1
}
if path=$(find_it); then echo "$path"; exit 0; fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "haproxy not found: installing Debian's haproxy package" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy) >&2
  find_it && exit 0
fi
cat >&2 <<'MSG'
haproxy is required by the relay bench and was not found.
  Debian/Ubuntu:  sudo apt-get install haproxy
  elsewhere:      see https://www.haproxy.org/#down
MSG
exit 1
