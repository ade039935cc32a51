#!/usr/bin/env bash
# Makes sure the system tools Anchorage needs are installed: SoftHSM2 (softhsm2-util and its PKCS#11
# module), OpenSC's pkcs11-tool, openssl, and p11-kit's server and client module (the network HSM stand-in
# the multi-node tests share a token through). Idempotent and quiet when everything is present; installs
# with apt-get when running as root on a Debian-like system, otherwise says what to install and fails.
set -euo pipefail

default_module=/usr/lib/softhsm/libsofthsm2.so
module=${ANCHORAGE_PKCS11_MODULE:-$default_module}

# A module chosen by the operator is not ours to install.
if [[ "$module" != "$default_module" && ! -e "$module" ]]; then
  echo "ensure-system-deps: ANCHORAGE_PKCS11_MODULE points to $module, which does not exist" >&2
  exit 1
fi

# p11-kit's client module lives in the multiarch library folder (Debian, Ubuntu) or in /usr/lib64 (Fedora).
p11_kit_client_module() {
  local candidate
  for candidate in /usr/lib/*/pkcs11/p11-kit-client.so /usr/lib64/pkcs11/p11-kit-client.so /usr/lib/pkcs11/p11-kit-client.so; do
    if [[ -e "$candidate" ]]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=("softhsm2-util (package softhsm2)")
[[ -e "$module" ]] || missing+=("the SoftHSM2 PKCS#11 module $module (package softhsm2)")
command -v pkcs11-tool >/dev/null 2>&1 || missing+=("pkcs11-tool (package opensc)")
command -v openssl >/dev/null 2>&1 || missing+=("openssl (package openssl)")
command -v p11-kit >/dev/null 2>&1 || missing+=("p11-kit (package p11-kit)")
p11_kit_client_module >/dev/null || missing+=("p11-kit's client module p11-kit-client.so (package p11-kit-modules)")

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-deps: installing softhsm2, opensc, openssl, p11-kit and p11-kit-modules (missing: ${missing[*]})" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends softhsm2 opensc openssl p11-kit p11-kit-modules >/dev/null
  still_missing=()
  command -v softhsm2-util >/dev/null 2>&1 || still_missing+=("softhsm2-util")
  [[ -e "$module" ]] || still_missing+=("$module")
  command -v pkcs11-tool >/dev/null 2>&1 || still_missing+=("pkcs11-tool")
  command -v openssl >/dev/null 2>&1 || still_missing+=("openssl")
  command -v p11-kit >/dev/null 2>&1 || still_missing+=("p11-kit")
  p11_kit_client_module >/dev/null || still_missing+=("p11-kit-client.so")
  if [[ ${#still_missing[@]} -gt 0 ]]; then
    echo "ensure-system-deps: still missing after apt-get install: ${still_missing[*]}" >&2
    exit 1
  fi
  exit 0
fi

{
  echo "ensure-system-deps: missing system dependencies:"
  for item in "${missing[@]}"; do echo "  - $item"; done
  echo "Install them, e.g. on Debian/Ubuntu:"
  echo "  sudo apt-get install --no-install-recommends softhsm2 opensc openssl p11-kit p11-kit-modules"
  echo "(SoftHSM2 module installed elsewhere? Point ANCHORAGE_PKCS11_MODULE at it.)"
} >&2
exit 1
