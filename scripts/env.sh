# Sourced by scripts/test and scripts/demo: makes .venv (once) and installs xloader into it.
# torch is pinned first to the CPU build this project is tested with (2.13.0); any other torch
# request that 2.13.0 does not satisfy would pull several GB of CUDA packages.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${XLOADER_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${XLOADER_TORCH_SPEC:-torch==2.13.0}"
export NO_ALBUMENTATIONS_UPDATE=1 TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.xloader-install-stamp"
# Reinstalled when what the install reads changes, the C listing it compiles included.
want="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/xloader/index/_fastlist.c" "$ROOT/scripts/env.sh" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "installing xloader and its development dependencies into $VENV (a few minutes the first time)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
  echo "$want" > "$stamp"
fi
