#!/usr/bin/env bash
# A throwaway certificate for the TLS checks, made at run time (no private key is
# committed): self-signed, ECDSA P-256, for localhost and 127.0.0.1, valid one day.
# CA:FALSE, so each client can trust it as its own anchor: rustls (webpki) refuses a
# CA certificate as a server's certificate, which openssl's default (CA:TRUE) would be.
#
#   .ci/tls/make-cert.sh DIR      → DIR/cert.pem, DIR/key.pem
#
# Installs openssl (Debian) if it is missing.
set -euo pipefail
dir=${1:?usage: make-cert.sh DIR}
if ! command -v openssl >/dev/null; then
  echo "tls: installing openssl (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext basicConstraints=critical,CA:FALSE \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
echo "tls: throwaway certificate $(openssl x509 -in "$dir/cert.pem" -noout -subject -enddate | tr '\n' ' ')"
