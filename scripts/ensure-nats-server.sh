#!/usr/bin/env bash
# Makes sure a nats-server binary exists: on PATH, in /usr/sbin, or installed from Debian's
# packages when we are root. Prints the path it found.
set -euo pipefail
find_it() {
  command -v nats-server 2>/dev/null && return 0
  for p in /usr/sbin/nats-server /usr/local/bin/nats-server; do [[ -x $p ]] && { echo "$p"; return 0; }; done
  return 1
}
if path=$(find_it); then echo "$path"; exit 0; fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "nats-server not found: installing Debian's nats-server package" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >&2
  find_it && exit 0
fi
cat >&2 <<'MSG'
nats-server is required and was not found.
  Debian/Ubuntu:  sudo apt-get install nats-server
  elsewhere:      see https://docs.nats.io/running-a-nats-service/introduction/installation
MSG
exit 1
