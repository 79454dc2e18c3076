#!/usr/bin/env sh
# Once per deployment, on the Docker host, before `docker compose up`: makes the cluster's TLS
# certificates (a root CA of its own, one certificate for the nodes, one for the security
# admin) and the password hashes of the users, under docker/security/generated/ (git-ignored).
#
#   OPENSEARCH_ADMIN_PASSWORD=... OPENSEARCH_PUBLIC_PASSWORD=... OPENSEARCH_INTERNAL_PASSWORD=... \
#   OPENSEARCH_WORKER_PASSWORD=... sh docker/security/init.sh
#
# Needs openssl and docker (the hashes come from the security plugin's own hash.sh, in the
# OpenSearch image; HASH_TOOL=/path/to/hash.sh uses a local copy instead, as the tests do).
# OUT_DIR puts the files elsewhere. Nothing here has a default: each password must be given.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="${OUT_DIR:-$here/generated}"
image=${OPENSEARCH_IMAGE:-opensearchproject/opensearch:2.19.1}
: "${OPENSEARCH_ADMIN_PASSWORD:?set OPENSEARCH_ADMIN_PASSWORD}"
: "${OPENSEARCH_PUBLIC_PASSWORD:?set OPENSEARCH_PUBLIC_PASSWORD}"
: "${OPENSEARCH_INTERNAL_PASSWORD:?set OPENSEARCH_INTERNAL_PASSWORD}"
: "${OPENSEARCH_WORKER_PASSWORD:?set OPENSEARCH_WORKER_PASSWORD}"
mkdir -p "$out/certs"
cd "$out/certs"
if [ ! -f root-ca.pem ]; then
  openssl genrsa -out root-ca-key.pem 3072
  openssl req -new -x509 -sha256 -days 3650 -key root-ca-key.pem -subj "/O=shop/OU=shopsearch/CN=shopsearch-root-ca" -out root-ca.pem
  for name in node admin; do
    cn=$([ "$name" = node ] && echo opensearch-node || echo admin)
    openssl genrsa -out "$name-key-rsa.pem" 3072
    openssl pkcs8 -inform PEM -outform PEM -in "$name-key-rsa.pem" -topk8 -nocrypt -out "$name-key.pem"
    openssl req -new -key "$name-key.pem" -subj "/O=shop/OU=shopsearch/CN=$cn" -out "$name.csr"
    printf 'subjectAltName=DNS:opensearch-1,DNS:opensearch-2,DNS:opensearch-3,DNS:localhost,IP:127.0.0.1\n' > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA root-ca.pem -CAkey root-ca-key.pem -CAcreateserial -sha256 -days 825 \
      -extfile "$name.ext" -out "$name.pem"
    rm -f "$name.csr" "$name.ext" "$name-key-rsa.pem"
  done
  chmod 600 ./*-key.pem
fi
if [ -n "${HASH_TOOL:-}" ]; then
  hash() { bash "$HASH_TOOL" -p "$1" 2>/dev/null | tail -n 1; }
else
  hash() { docker run --rm "$image" /usr/share/opensearch/plugins/opensearch-security/tools/hash.sh -p "$1" | tail -n 1; }
fi
cat > "$out/internal_users.yml" <<YAML
_meta:
  type: "internalusers"
  config_version: 2
admin:
  hash: "$(hash "$OPENSEARCH_ADMIN_PASSWORD")"
  reserved: true
  description: "the shop's operators"
shopsearch-public:
  hash: "$(hash "$OPENSEARCH_PUBLIC_PASSWORD")"
  description: "the proxy's public face"
shopsearch-internal:
  hash: "$(hash "$OPENSEARCH_INTERNAL_PASSWORD")"
  description: "the proxy's internal face"
shopsearch-worker:
  hash: "$(hash "$OPENSEARCH_WORKER_PASSWORD")"
  description: "the Celery workers"
YAML
chmod 600 "$out/internal_users.yml"
echo "made $out (certificates and internal_users.yml)"
