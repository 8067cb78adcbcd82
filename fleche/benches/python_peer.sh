#!/usr/bin/env bash
# The Python reference library, fleche 0.22.2, on the workloads of this crate's benches: median
# microseconds per memoized call, for a small int and a 1M-element float64 array result, on hits
# and misses, in memory, in cloudpickle files, and with SQLite call records plus value files.
# See python_peer.py for what each row times.
#
# Run with `bash fleche/benches/python_peer.sh`. Needs Python 3.11 or newer with pip, and PyPI;
# the packages go into a scratch environment under ${TMPDIR:-/tmp}, outside the repository.
# PYTHON picks the interpreter (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
env_dir="${TMPDIR:-/tmp}/fleche-python-peer"
packages=(fleche==0.22.2 cloudpickle sqlalchemy numpy)

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "python_peer.sh: fleche 0.22.2 needs Python 3.11 or newer; set PYTHON" >&2
    exit 1
fi

if [[ ! -x "$env_dir/bin/python" ]]; then
    # Some distributions ship Python without ensurepip; then the outer pip fills the environment.
    "$python" -m venv "$env_dir" 2>/dev/null || "$python" -m venv --clear --without-pip "$env_dir"
fi
if "$env_dir/bin/python" -m pip --version >/dev/null 2>&1; then
    pip=("$env_dir/bin/python" -m pip)
else
    pip=("$python" -m pip --python "$env_dir/bin/python")
fi
"${pip[@]}" install --quiet --disable-pip-version-check "${packages[@]}"

exec "$env_dir/bin/python" "$here/python_peer.py"
