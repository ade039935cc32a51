#!/usr/bin/env bash
# Initialises a SoftHSM2 token for development and tests.
#
#   hsm/init-token.sh <softhsm2.conf path> <token label> <user pin> <so pin>
#
# Idempotent: if a token with that label already exists it says so and does nothing, because SoftHSM would
# happily create a second token with the same label and PKCS#11 clients find tokens by label.
# The PINs come from our own code as arguments; this script never prints them.
set -euo pipefail

if [[ $# -ne 4 ]]; then
  echo "usage: $0 <softhsm2.conf path> <token label> <user pin> <so pin>" >&2
  exit 2
fi

conf=$1
label=$2
user_pin=$3
so_pin=$4

if [[ ! -f "$conf" ]]; then
  echo "init-token: SoftHSM2 config not found: $conf" >&2
  exit 2
fi
# PKCS#11 token labels are 32 bytes, space padded; SoftHSM would silently cut a longer one.
label_bytes=$(printf '%s' "$label" | LC_ALL=C wc -c)
if [[ -z "$label" || $label_bytes -gt 32 || "$label" =~ ^\ |\ $ ]]; then
  echo "init-token: token label must be 1-32 characters without leading or trailing spaces" >&2
  exit 2
fi
if [[ -z "$user_pin" || -z "$so_pin" ]]; then
  echo "init-token: user PIN and SO PIN must not be empty" >&2
  exit 2
fi
if ! command -v softhsm2-util >/dev/null 2>&1; then
  echo "init-token: softhsm2-util not found (install the softhsm2 package, or run scripts/ensure-system-deps.sh)" >&2
  exit 1
fi

export SOFTHSM2_CONF=$conf

# "Label:" lines of --show-slots carry the space-padded label; strip the padding before comparing.
existing_labels=$(softhsm2-util --show-slots | sed -n 's/^[[:space:]]*Label:[[:space:]]\{0,\}//p' | sed 's/[[:space:]]*$//')
while IFS= read -r existing; do
  if [[ -n "$existing" && "$existing" == "$label" ]]; then
    echo "init-token: token \"$label\" already exists; nothing to do"
    exit 0
  fi
done <<<"$existing_labels"

# Output is discarded on success because softhsm2-util echoes nothing secret but is chatty; on failure it is
# shown (softhsm2-util never prints the PINs it was given).
if ! output=$(softhsm2-util --init-token --free --label "$label" --pin "$user_pin" --so-pin "$so_pin" 2>&1); then
  echo "init-token: softhsm2-util could not initialise token \"$label\":" >&2
  echo "$output" >&2
  exit 1
fi
echo "init-token: initialised token \"$label\""
