#!/usr/bin/env bash
# One-shot, idempotent environment setup: creates .venv at the repository root with
# VISSL 0.1.6 on today's Python/PyTorch and this plugin installed (editable).
# Re-running is cheap: the install is skipped while requirements and this script are unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON=${PYTHON:-python3}
VENV=.venv
# Real images for the Fashion-MNIST study and tests (Debian package dataset-fashion-mnist, MIT):
# installed when this machine can (root + apt), otherwise those tests skip and the study says how.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ "$(id -u)" = 0 ] \
   && command -v apt-get >/dev/null; then
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
    || echo "setup.sh: could not install dataset-fashion-mnist (the tests that need it will skip)"
fi
stamp_of() { cat requirements.txt setup.sh setup.py scripts/install_detectron2.sh | sha256sum | cut -d' ' -f1; }
if [ -f "$VENV/.aasae-stamp" ] && [ "$(cat "$VENV/.aasae-stamp")" = "$(stamp_of)" ] \
   && "$VENV/bin/python" -c "import vissl_aasae, vissl, classy_vision, detectron2" 2>/dev/null; then
  echo "setup.sh: .venv is up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install -r requirements.txt
# vissl 0.1.6 without its obsolete pins; then classy-vision 0.7.0 over the broken copy
# bundled in the vissl wheel (order matters: both own classy_vision/*).
$PIP install --no-deps vissl==0.1.6
$PIP install --no-deps --force-reinstall classy-vision==0.7.0
# the plugin itself; compat mode puts the repository on sys.path so that the Hydra
# search-path plugin in hydra_plugins/ is discovered and edits take effect at once.
$PIP install --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
# detectron2 v0.5 for the VOC detection benchmark (Python code only; see the script)
bash scripts/install_detectron2.sh "$VENV/bin/python"
"$VENV/bin/python" -c "import vissl_aasae.registry, vissl, classy_vision; print('setup.sh: ok, vissl', vissl.__version__ if hasattr(vissl, '__version__') else '0.1.6')"
stamp_of > "$VENV/.aasae-stamp"
