#!/usr/bin/env bash
# Writes the development PKI into settings/dev/certs/ (or $1): a root CA, one certificate and key
# per operator (CN and DNS SAN = the operator's name, so `curl --resolve hd-1:5555:127.0.0.1` works),
# the signing certificate of the directory admin, nats-server's certificate and the bus admins'
# client certificates (nats-admin for the OPS account, nats-admin-games for GAMES). Existing files
# are kept, so running it twice is harmless (and adds what a newer version issues); delete the
# folder to start over. Dev only: keys are unencrypted.
set -euo pipefail
out=${1:-settings/dev/certs}
operators=(sd-1 public-proxy-1 hd-1 hd-2 public-proxy-eps-1 public-proxy-hyper-1 games-1)
signers=(sd-admin)
# Bus principals that are no operator: the admins of the bus's two accounts (operator tools, test setup).
bus_clients=(nats-admin nats-admin-games)
days=3650
mkdir -p "$out"
cd "$out"

if [[ ! -f root.key || ! -f root.crt ]]; then
  openssl ecparam -name prime256v1 -genkey -noout -out root.key 2>/dev/null
  openssl req -x509 -new -key root.key -sha256 -days "$days" -subj "/CN=EPS P2P dev root" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out root.crt 2>/dev/null
fi

issue() { # name, extensions
  local name=$1 ext=$2
  [[ -f "$name.crt" && -f "$name.key" ]] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key.tmp" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$name.key.tmp" -out "$name.key"
  rm -f "$name.key.tmp"
  openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr" 2>/dev/null
  printf '%b' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA root.crt -CAkey root.key -CAcreateserial -days "$days" \
    -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chmod 600 "$name.key"
}

for op in "${operators[@]}"; do
  issue "$op" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:$op\n"
done
for c in "${bus_clients[@]}"; do
  issue "$c" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:$c\n"
done
# nats-server's own certificate: clients reach it on loopback by IP or by name.
issue nats-server "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
# The routes between the nodes of a nats-server cluster (make demo-cluster): each node dials the
# others with it and accepts only it (verify_and_map to the user nats-route, its first DNS SAN), so
# an operator's client certificate of the same root cannot join the cluster as a route.
issue nats-route "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:nats-route,IP:127.0.0.1,DNS:localhost\n"
for s in "${signers[@]}"; do
  issue "$s" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n"
done
rm -f root.srl
echo "dev certificates in $(pwd)"
