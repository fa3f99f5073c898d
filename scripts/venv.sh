# Sourced by scripts/test.sh and scripts/demo.sh: create .venv if missing and
# install the project into it, editable. pip shows errors only (-qq): its
# warnings here are mostly about index locations of the machine's pip config.

ensure_venv() {
    local extras="${1:-.}"
    if [ ! -x .venv/bin/python ]; then
        local python="${PYTHON:-python3}"
        echo "creating .venv with $("$python" --version 2>&1)"
        "$python" -m venv .venv
    fi
    echo "installing cxstream into .venv (pip install -e '$extras')"
    .venv/bin/python -m pip install -qq --disable-pip-version-check --no-input -e "$extras"
}
