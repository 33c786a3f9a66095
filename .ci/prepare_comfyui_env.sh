#!/usr/bin/env bash
# Build the Python a ComfyUI-Manager user has, for polycolor's real-ComfyUI tests.
#
# ComfyUI-Manager installs a node pack into ComfyUI's own Python: ComfyUI's requirements.txt is already there
# (with whatever torch the user installed), the pack's folder is put into ComfyUI/custom_nodes/ (a git clone,
# never `pip install -e`), and `pip install <line>` runs once per line of the pack's requirements.txt. Nothing
# else: not the project's dev extra, not scikit-image, matplotlib, onnxruntime, ... unless one of those lists
# pulls it in. This script builds exactly that, in a fresh venv (never the dev environment):
#   1. python -m venv (no system site-packages);
#   2. torch==2.14.1 torchvision==0.29.1 from this machine's local index (pinned by a constraints file for
#      every later step, so no step can replace them);
#   3. ComfyUI's requirements.txt without torch/torchvision/torchaudio (as prepare_comfyui.sh does);
#   4. the pack's requirements.txt, one `pip install <line>` per line, as ComfyUI-Manager does.
# The pack itself is NOT installed into the venv: the tests link the repository into ComfyUI's custom_nodes.
#
# Idempotent: the venv is stamped with a hash of its inputs (both requirements files, the torch pins, the
# base Python's version); a stamped venv is reused in well under a second. Built in a temporary folder and
# moved into place only when complete. Prints the venv's python path as its last line of stdout.
#
# Usage: prepare_comfyui_env.sh COMFYUI_DIR
# Environment:
#   POLYCOLOR_COMFYUI_VENV   where the venv goes (default: <repo>/.ci/_venv, git-ignored)
#   PYTHON                   base interpreter for the venv (default: python3/python)
#   POLYCOLOR_COMFYUI_FORCE=1  rebuild even when stamped
set -euo pipefail

TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMFY="${1:?usage: prepare_comfyui_env.sh COMFYUI_DIR}"
VENV="${POLYCOLOR_COMFYUI_VENV:-$REPO/.ci/_venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
if [[ -z "${PYTHON:-}" ]]; then
    if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi

log() { echo "[prepare_comfyui_env] $*" >&2; }
die() { echo "[prepare_comfyui_env] ERROR: $*" >&2; exit 1; }

[[ -f "$COMFY/requirements.txt" && -f "$COMFY/main.py" ]] || die "$COMFY is not a ComfyUI folder (run .ci/prepare_comfyui.sh first)"

STAMP_NAME=".polycolor_manager_env"
STAMP_WANT="$( { cat "$COMFY/requirements.txt" "$REPO/requirements.txt"; printf '%s\n' "${TORCH_PINS[@]}";
                 "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"

if [[ "${POLYCOLOR_COMFYUI_FORCE:-0}" != "1" && -x "$VENV/bin/python" && -f "$VENV/$STAMP_NAME" ]] \
    && [[ "$(cat "$VENV/$STAMP_NAME")" == "$STAMP_WANT" ]]; then
    log "Manager-built venv already present: $VENV"
    echo "$VENV/bin/python"
    exit 0
fi

TMP="$VENV.building"
rm -rf "$TMP"
trap 'rm -rf "$TMP"' EXIT
log "creating a fresh venv in $TMP"
"$PYTHON" -m venv "$TMP"
PY="$TMP/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

PINS="$TMP/.torch_constraints.txt"
printf '%s\n' "${TORCH_PINS[@]}" > "$PINS"

log "1/3 ${TORCH_PINS[*]} (local disk)"
"${PIP[@]}" "${TORCH_PINS[@]}" -c "$PINS" >&2

log "2/3 ComfyUI's requirements.txt (without torch/torchvision/torchaudio)"
REQS="$TMP/.comfyui_requirements.txt"
grep -vE '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*([<>=!~;#].*)?$' "$COMFY/requirements.txt" > "$REQS"
"${PIP[@]}" -r "$REQS" -c "$PINS" >&2

log "3/3 the pack's requirements.txt, one line at a time (as ComfyUI-Manager does)"
while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%%#*}"
    line="$(echo "$line" | xargs)"
    [[ -z "$line" ]] && continue
    log "    pip install $line"
    "${PIP[@]}" "$line" -c "$PINS" >&2
done < "$REPO/requirements.txt"

"$PY" - "${TORCH_PINS[@]}" <<'EOF' || die "torch/torchvision in the venv are not the pinned builds"
import importlib.metadata as m, sys
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    have = m.version(name).split("+")[0]
    assert have == want, (name, have, want)
EOF

printf '%s' "$STAMP_WANT" > "$TMP/$STAMP_NAME"
rm -rf "$VENV"
mv "$TMP" "$VENV"
trap - EXIT
# A venv's scripts record its path; moving it keeps `bin/python` working (a symlink to the base Python), and
# every caller runs `python -m ...`, never the venv's console scripts.
log "Manager-built venv ready: $VENV"
echo "$VENV/bin/python"
