# Sourced by the first-run checks (no_pocl.sh, pip_only.sh): fresh_venv VENV EXTRAS installs
# the package into a new venv VENV as the README says (pip install '.[EXTRAS]', from a clean
# export of HEAD, so that nothing uncommitted or built in the checkout is used); with
# REUSE_VENV=1 an existing VENV that has the clgemm command is kept.
fresh_venv() {
  local venv=$1 extras=$2 src
  if [ "${REUSE_VENV:-0}" = 1 ] && [ -x "$venv/bin/clgemm" ]; then return 0; fi
  src=$(mktemp -d /tmp/clgemm-fresh-src.XXXXXX)
  rm -rf "$venv"
  git archive HEAD | tar -x -C "$src"
  python3 -m venv "$venv"
  (cd "$src" && nice "$venv/bin/pip" install -q ".[$extras]") 2>&1 | tail -n 5
  rm -rf "$src"
}
