#!/usr/bin/env bash
# The install a newcomer does: the built wheel, no extras, in a venv of its own (nothing of the project's .venv),
# then train debug=fast, evaluate and export from an empty folder. Fails on any error and on any warning printed.
#   tools/plain_install_check.sh [<data folder holding MNIST/raw/>]   (default: $VAELAB_DATA_DIR)
# Run by .ci/run; the versions installed are those constraints.txt pins.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${1:-${VAELAB_DATA_DIR:?pass the data folder or set VAELAB_DATA_DIR}}")
WORK=$(mktemp -d /tmp/vaelab-plain-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PYTHON=${PYTHON:-python3}

# The wheel is built with the project venv's build backend (make venv); the venv it goes into is a plain one.
.venv/bin/python -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" . >/dev/null
"$PYTHON" -m venv "$WORK/venv"
# pip's own notices (a machine's find-links, say) go to a log, shown only if the install fails.
if ! { "$WORK/venv/bin/python" -m pip install --quiet --upgrade pip \
       && "$WORK/venv/bin/python" -m pip install --quiet -c constraints.txt "$WORK"/dist/vaelab-*.whl; } \
       >"$WORK/install.log" 2>&1; then
    cat "$WORK/install.log" >&2
    echo "plain install: pip could not install the wheel" >&2
    exit 1
fi
mkdir "$WORK/empty" "$WORK/hook"
cd "$WORK/empty"
# Every warning Python shows, whatever its wording (Lightning prints some as a bare "file:line: message"), is
# announced with its category first, so that the check below sees it.
cat >"$WORK/hook/sitecustomize.py" <<'PY'
import sys
import warnings

_show = warnings.showwarning


def _announce(message, category, filename, lineno, file=None, line=None):
    print(f"plain install: a {category.__name__} was shown: {message}", file=sys.stderr)
    _show(message, category, filename, lineno, file, line)


warnings.showwarning = _announce
PY
export PATH="$WORK/venv/bin:$PATH" VAELAB_DATA_DIR="$DATA" PYTHONPATH="$WORK/hook"
unset VAELAB_ROOT

check() {  # <what> <command...>: runs it; its output must hold no error and no warning
    local log="$WORK/$1.log"
    if ! "${@:2}" >"$log" 2>&1; then
        cat "$log" >&2
        echo "plain install: '$1' failed" >&2
        exit 1
    fi
    if grep -iE "warning|traceback" "$log" >&2; then
        echo "plain install: '$1' printed the warnings above" >&2
        exit 1
    fi
    echo "plain install: $1 ok"
}
refused() {  # <what> <expected words> <command...>: must fail with one error line naming the extra to install
    local log="$WORK/$1.log"
    if "${@:3}" >"$log" 2>&1 || [ "$(grep -c . "$log")" != 1 ] || ! grep -q "^error: .*$2" "$log"; then
        cat "$log" >&2
        echo "plain install: '$1' should be one error line naming $2" >&2
        exit 1
    fi
    echo "plain install: $1 refused in one line"
}
check train vaelab-train debug=fast print_config=false
refused optuna "vaelab\[sweeps\]" vaelab-train -m hparams_search=optuna debug=fast
refused joblib "vaelab\[sweeps\]" vaelab-train -m launcher=joblib debug=fast
refused mlflow "vaelab\[mlflow\]" vaelab-train logger=mlflow debug=fast
run=$(dirname logs/debug/train/runs/*/metrics.json)  # debug presets write under logs/debug/
check evaluate vaelab-eval "ckpt_path=$run/checkpoints/last.ckpt" iwae_samples=10 trainer.limit_test_batches=2 figures.num_points=200
check export vaelab-export "$run/checkpoints/last.ckpt" --out export
check summary vaelab-sweeps --help
[ -f export/encoder.pt2 ] && [ -f logs/eval/runs/*/metrics.json ]
