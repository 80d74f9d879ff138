# Shared by the scripts: system packages, the build, and where its outputs are.
# shellcheck shell=bash

# Debian packages the build and the tests need.
BUILD_PACKAGES="gcc make pkg-config clang libclang-dev libssl-dev libpcre2-dev zlib1g-dev"
TEST_PACKAGES="openssl curl perl libio-socket-ssl-perl haproxy libfaketime"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Installs the Debian packages that are missing (needs root or sudo).
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Python modules the token tests verify with (two implementations independent of the module).
PYTHON_MODULES="pyjwt jwcrypto cryptography prometheus_client"

ensure_python_modules() {
    python3 -c 'import jwt, jwcrypto, cryptography, prometheus_client' 2>/dev/null && return 0
    say "installing Python modules: $PYTHON_MODULES"
    # A Python without pip, or whose packages Debian manages, gets Debian's packages.
    python3 -m pip install --quiet $PYTHON_MODULES 2>/dev/null \
        || ensure_packages python3-jwt python3-jwcrypto python3-cryptography python3-prometheus-client
}

# What the browser test (tests/browser/) needs: Chromium and its WebDriver, the emulated
# smartcard (SoftHSM2, NSS's certutil and modutil, OpenSC's pkcs11-tool) and the Python modules
# that drive them.
BROWSER_PACKAGES="chromium chromium-driver softhsm2 libnss3-tools opensc"
BROWSER_PYTHON_MODULES="selenium PyKCS11"

# Installs what the browser test needs; returns non-zero (without exiting) when it cannot.
ensure_browser() {
    ensure_packages $BROWSER_PACKAGES || return 1
    python3 -c 'import selenium, PyKCS11' 2>/dev/null && return 0
    say "installing Python modules: $BROWSER_PYTHON_MODULES"
    python3 -m pip install --quiet $BROWSER_PYTHON_MODULES 2>/dev/null \
        || ensure_packages python3-selenium python3-pykcs11 || return 1
    python3 -c 'import selenium, PyKCS11' 2>/dev/null
}

ensure_rust() {
    command -v cargo >/dev/null || {
        echo "cargo is not installed: install Rust (https://rustup.rs) first" >&2
        exit 1
    }
}

# Builds the module (and, the first time, nginx from the bundled source) with cargo profile
# $1 (dev or release). Sets MODULE_SO and NGINX_BIN.
build_module() {
    local profile="${1:-dev}" outputs out_dir
    say "building the module and nginx (cargo --profile $profile)"
    # The build script's out dir (it records nginx's build dir) and the module, as cargo reports
    # them (NGINX_BUILD_DIR or CARGO_TARGET_DIR may point elsewhere).
    outputs=$(cargo build --profile "$profile" --message-format=json-render-diagnostics \
        | python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "ngx-http-auth-cert" not in msg.get("package_id", ""):
        continue
    if msg.get("reason") == "build-script-executed":
        print("out_dir", msg["out_dir"])
    for name in msg.get("filenames") or []:
        if name.endswith(".so"):
            print("module", name)')
    out_dir=$(echo "$outputs" | sed -n 's/^out_dir //p')
    [ -n "$out_dir" ] || { echo "could not find the build output" >&2; exit 1; }
    NGINX_BIN="$(cat "$out_dir/nginx-build-dir")/nginx"
    MODULE_SO=$(echo "$outputs" | sed -n 's/^module //p')
    [ -x "$NGINX_BIN" ] && [ -f "$MODULE_SO" ] || { echo "build outputs missing" >&2; exit 1; }
    export NGINX_BIN MODULE_SO
}

# The main-context lines that load the module (and run workers as root when we are root,
# since the test directories are private to their owner).
nginx_globals() {
    local globals="load_module $MODULE_SO;"
    [ "$(id -u)" -eq 0 ] && globals="user root; $globals"
    echo "$globals"
}
