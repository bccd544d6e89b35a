#!/usr/bin/env bash
# One command from a fresh clone: install snapctl into .venv, build the example project's
# SQLite database, take a snapshot, change the data, and restore it. No server needed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$root/.venv/bin/python" ] || python3 -m venv "$root/.venv"
"$root/.venv/bin/python" -m pip install -q -e "$root"
export PATH="$root/.venv/bin:$PATH"
cd "$root/example"

python manage.py migrate --no-input -v0
python manage.py seed_shop
echo "+ snapctl dump --label quickstart"
snapctl dump --label quickstart
python manage.py seed_shop --customers 5 --products 2 --orders 5 --seed 1
echo "+ snapctl restore quickstart --yes"
snapctl restore quickstart --yes
echo "+ snapctl list"
snapctl list
