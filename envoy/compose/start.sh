#!/bin/sh
# Starts the compose stack's Envoy: the state token the control plane generated on its first
# start (an owner-only file on the shared `secrets` volume) is written into the mounted config,
# which holds a placeholder in its place, and Envoy runs the result. The token never appears in
# a compose file or in any output. The variables below are for the tests; compose sets none.
set -eu
secrets_dir="${SECRETS_DIR:-/secrets}"
config="${ENVOY_CONFIG:-/etc/envoy/envoy.yaml}"
rendered="${RENDERED_CONFIG:-/tmp/envoy.yaml}"
token="$(cat "$secrets_dir/state-token")"
case "$token" in
  *[!0-9a-zA-Z_-]* | "") echo "start.sh: $secrets_dir/state-token is empty or not a token" >&2; exit 1 ;;
esac
umask 077
sed "s/__GATEWAY_STATE_TOKEN__/$token/g" "$config" > "$rendered"
exec "${ENVOY_BIN:-envoy}" -c "$rendered" "$@"
