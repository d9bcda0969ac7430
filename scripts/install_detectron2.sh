#!/usr/bin/env bash
# Install detectron2 v0.5 (Python code only, no compiled extension) into a Python environment.
#
# Usage: scripts/install_detectron2.sh [PYTHON]      (default: the repository's .venv/bin/python)
#
# Canonical install, for machines that can reach GitHub (builds the C++/CUDA extension too):
#     PYTHON -m pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git@v0.5'
#     PYTHON -m pip install 'pycocotools>=2.0.8'
# (v0.5's C++ sources predate torch 2.x and may not compile against it; the Python-only install
# below does not need them.)
#
# detectron2 is not on PyPI, and its repository cannot be reached from our machines. PyPI has
# `detectron2-cdo==0.5`, an sdist whose Python code equals FAIR detectron2 v0.5 but without the C++
# sources (detectron2/layers/csrc), so its setup.py cannot build `detectron2._C`. Its model-zoo yaml
# files sit inside detectron2/model_zoo/configs instead of the top-level configs/ that setup.py packs.
# This script downloads that sdist, and in a temporary copy of it:
#   * takes the `detectron2._C` extension out of setup.py (and its BuildExtension cmdclass);
#   * moves the model-zoo configs to configs/ where setup.py looks for them (an empty configs/ when
#     the sdist has none, so setup.py neither fails nor ships a dangling link);
#   * names the distribution `detectron2` (so a later canonical install replaces it cleanly) and
#     replaces install_requires by the runtime needs that work on Python 3.11 / numpy 2;
# then builds and installs it without build isolation (setup.py imports torch).
#   * puts scripts/detectron2_C.py in place of the compiled `detectron2._C` (its ops raise a clear
#     error when called) and renames in the sources what Pillow >= 10 (Image.LINEAR) and numpy >= 1.24
#     (np.str/int/float) removed, so that detectron2 imports and runs on its own.
# The Faster R-CNN R50-C4 path runs without `_C` (it uses torchvision's roi_align/nms).
#
# Idempotent: does nothing when detectron2 0.5 and pycocotools import and detectron2.modeling imports on its own.
# Needs torch and torchvision already installed in the target environment (see requirements.txt).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${1:-$REPO/.venv/bin/python}
D2_VERSION=0.5
# Runtime dependencies of detectron2 v0.5's Python code, at versions that install on Python 3.11
# with numpy 2 (fvcore/iopath are the project's own pins; pycocotools >= 2.0.8 has numpy 2 wheels).
RUNTIME_DEPS=(
  "pycocotools==2.0.11"
  "fvcore==0.1.5.post20221221"
  "iopath==0.1.10"
  "yacs>=0.1.8"
  "termcolor>=1.1"
  "tabulate"
  "cloudpickle"
  "tqdm>4.29.0"
  "matplotlib"
  "Pillow>=7.1"
  "omegaconf>=2.1"
  "hydra-core>=1.1"
)

if ! [ -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then
  echo "install_detectron2.sh: no python executable at '$PY'" >&2
  exit 2
fi

if "$PY" - "$D2_VERSION" <<'EOF' 2>/dev/null; then
import sys
import detectron2, pycocotools  # noqa: F401
import detectron2.modeling  # noqa: F401  (imports on its own: _C and today's Pillow/numpy names are provided)
sys.exit(0 if detectron2.__version__ == sys.argv[1] else 1)
EOF
  echo "install_detectron2.sh: detectron2 $D2_VERSION already installed for $PY"
  exit 0
fi

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  echo "install_detectron2.sh: torch and torchvision must be installed in $PY's environment first" >&2
  exit 2
fi

PIP=("$PY" -m pip --disable-pip-version-check -q)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/install_detectron2.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "install_detectron2.sh: installing runtime dependencies"
"${PIP[@]}" install "${RUNTIME_DEPS[@]}"

echo "install_detectron2.sh: downloading the detectron2-cdo==$D2_VERSION sdist"
# --no-build-isolation: pip prepares the sdist's metadata by running its setup.py, which imports torch.
"${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation \
  -d "$WORK" "detectron2-cdo==$D2_VERSION"
tar -xzf "$WORK"/detectron2_cdo-"$D2_VERSION".tar.gz -C "$WORK"
SRC="$WORK/detectron2_cdo-$D2_VERSION"

echo "install_detectron2.sh: preparing setup.py (no C++ extension, model-zoo configs, runtime deps)"
if [ ! -d "$SRC/configs" ]; then
  if [ -d "$SRC/detectron2/model_zoo/configs" ] && [ ! -L "$SRC/detectron2/model_zoo/configs" ]; then
    mv "$SRC/detectron2/model_zoo/configs" "$SRC/configs"
  else
    mkdir "$SRC/configs"
  fi
fi
"$PY" - "$SRC/setup.py" "${RUNTIME_DEPS[@]}" <<'EOF'
import re
import sys

path, deps = sys.argv[1], sys.argv[2:]
text = open(path).read()
edits = [
    (r"ext_modules=get_extensions\(\),", "ext_modules=[],"),
    (r'\n\s*cmdclass=\{"build_ext": torch\.utils\.cpp_extension\.BuildExtension\},', ""),
    (r'name="detectron2_cdo",', 'name="detectron2",'),
    (r"install_requires=\[.*?\n    \],", "install_requires=%r," % deps),
]
for pattern, replacement in edits:
    text, count = re.subn(pattern, lambda _m: replacement, text, count=1, flags=re.S)
    if count != 1:
        sys.exit("install_detectron2.sh: setup.py has no %r; the sdist changed" % pattern)
open(path, "w").write(text)
EOF

echo "install_detectron2.sh: detectron2._C placeholder and today's Pillow/numpy names in the sources"
# detectron2 imports its compiled _C at import time; a Python module stands in for it (its ops raise
# a clear error when called), so that detectron2 imports on its own, without vissl_aasae
cp "$REPO/scripts/detectron2_C.py" "$SRC/detectron2/_C.py"
"$PY" - "$SRC/detectron2" <<'EOF'
import pathlib
import re
import sys

# Pillow 10 removed Image.LINEAR (a default argument at import time); numpy 1.24 removed np.str/int/float
for path in pathlib.Path(sys.argv[1]).rglob("*.py"):
    text = path.read_text()
    fixed = text.replace("Image.LINEAR", "Image.BILINEAR")
    fixed = re.sub(r"\bnp\.(str|int|float)\b(?![\w.])", r"\1", fixed)
    if fixed != text:
        path.write_text(fixed)
EOF

echo "install_detectron2.sh: building and installing detectron2 $D2_VERSION"
"${PIP[@]}" install --no-deps --no-build-isolation "$SRC"

"$PY" - "$D2_VERSION" <<'EOF'
import os
import sys

import detectron2
import pycocotools  # noqa: F401

assert detectron2.__version__ == sys.argv[1], detectron2.__version__
zoo = os.path.join(os.path.dirname(detectron2.__file__), "model_zoo", "configs")
n_yaml = sum(f.endswith(".yaml") for _, _, files in os.walk(zoo) for f in files)
print("install_detectron2.sh: ok, detectron2 %s (no compiled extension, %d model-zoo yaml files)"
      % (detectron2.__version__, n_yaml))
EOF
