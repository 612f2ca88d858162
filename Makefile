# The two commands of the quick start are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
CERTS := settings/dev/certs

.PHONY: demo demo-cluster test install native build certs nats-config nats-server coturn chromium sd-setup sd-repair sd-reset bench clean-certs

install: node_modules/.package-lock.json
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

## The zero-copy splice addon (native/splice/): npm ci builds it; this rebuilds it after a change.
## It never fails: without a compiler the proxy relays with its JS splicer.
native: install
	@node scripts/build-native.mjs

build: install native
	npx tsc -p tsconfig.json

CERT_FILES := $(CERTS)/root.crt $(CERTS)/sd-admin.crt $(CERTS)/nats-server.crt $(CERTS)/nats-route.crt $(CERTS)/nats-admin.crt $(CERTS)/nats-admin-games.crt
certs: $(CERT_FILES)
$(CERT_FILES):
	bash scripts/make-certs.sh $(CERTS)

## nats-server's configuration (settings/dev/nats/nats.conf), generated from the directory and the
## roles: TLS with client certificates, one user per principal, least privilege. Cheap: always rerun.
nats-config: certs build
	node dist/src/cli/nats-config.js

nats-server:
	@bash scripts/ensure-nats-server.sh >/dev/null

# coturn is only needed by the STUN interop tests, which skip without it.
coturn:
	@bash scripts/ensure-coturn.sh >/dev/null || true

# chromium is only needed by the inspector's browser test, which skips without it.
chromium:
	@bash scripts/ensure-chromium.sh >/dev/null || true

## Install everything, start the whole stack, ping hd-2 through the proxy, run until Ctrl-C.
demo: install nats-server certs build nats-config
	node dist/src/cli/demo.js

## The cluster profile on this machine: 3 nats-servers (routes over TLS, JetStream R3), 2 proxies of one
## operator, 2 games instances, sd and the EPS servers; pings and duels through each, prints what runs where.
## ONCE=--once stops after the checks instead of running until Ctrl-C.
demo-cluster: install nats-server certs build
	node dist/src/cli/demo-cluster.js $(ONCE)

## Install everything and run the whole test suite.
test: install nats-server coturn chromium certs build nats-config
	npx tsc -p tsconfig.test.json
	npx vitest run

## Sign and submit the dev directory records (settings/dev/directory/) to the running sd.
sd-setup: install certs build
	node dist/src/cli/sd-setup.js

## Check the dev directory stream and show what a repair would remove; YES=--yes applies it.
sd-repair: install build
	SD_SETTINGS=settings/dev/roles/sd-1 node dist/src/cli/sd.js repair $(YES)

## Delete the dev directory stream (e.g. written under other certificates); YES=--yes applies it.
sd-reset: install build
	SD_SETTINGS=settings/dev/roles/sd-1 node dist/src/cli/sd.js repair --reset $(YES)

bench: install build
	npm run bench

clean-certs:
	rm -rf $(CERTS)
