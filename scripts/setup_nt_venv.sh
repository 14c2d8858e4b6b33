#!/usr/bin/env bash
# Create .venv-nt: neural-tangents 0.6.5 in its own virtual environment, the outside anchor of
# benchmarks/ntk_bench.py (which runs benchmarks/nt_reference.py with this venv's python).
#
# Pinned: newer JAX breaks neural-tangents 0.6.5's import or its structured derivatives, and
# numpy 2 breaks jaxlib 0.4.25. neural-tangents pulls tensorflow, which is why this lives apart
# from the project's .venv (never install jax or neural-tangents there).
#
# Usage: scripts/setup_nt_venv.sh [PYTHON]     (PYTHON defaults to python3; 3.9-3.12 work)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
VENV=.venv-nt
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import neural_tangents, jax; assert jax.__version__ == '0.4.25'" 2>/dev/null; then
    echo "$VENV is ready ($("$VENV/bin/python" -c 'import neural_tangents as nt; print("neural-tangents", nt.__version__)'))"
    exit 0
fi
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "jax==0.4.25" "jaxlib==0.4.25" "numpy<2" "neural-tangents==0.6.5"
"$VENV/bin/python" - <<'PY'
import jax, neural_tangents as nt
from neural_tangents import stax
print("jax", jax.__version__, "neural-tangents", nt.__version__, "structured derivatives:",
      nt.NtkImplementation.STRUCTURED_DERIVATIVES)
PY
