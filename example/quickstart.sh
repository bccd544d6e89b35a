#!/usr/bin/env bash
# One command from a fresh clone: install snapctl into .venv, build the example project's
# SQLite database, take a snapshot, change the data, restore it, and show that the data came
# back and where the snapshot is. No server needed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$root/.venv/bin/python" ] || python3 -m venv "$root/.venv"
# An editable install follows the source: once it is there, nothing to do.
"$root/.venv/bin/python" -c "import snapctl" 2>/dev/null ||
    "$root/.venv/bin/python" -m pip install -q -e "$root"
export PATH="$root/.venv/bin:$PATH"
cd "$root/example"

counts() {
    python manage.py shell -v0 -c "from shop.models import Customer, Order
print(f'  {Customer.objects.count()} customers, {Order.objects.count()} orders')"
}

python manage.py migrate --no-input -v0
python manage.py seed_shop
echo "The example database holds:"; counts
echo "+ snapctl dump --label quickstart"
snapctl dump --label quickstart
python manage.py seed_shop --customers 5 --products 2 --orders 5 --seed 1
echo "After a change it holds:"; counts
echo "+ snapctl restore quickstart --yes"
snapctl restore quickstart --yes
echo "After the restore it holds, as when the snapshot was taken:"; counts
echo "+ snapctl show quickstart"
snapctl show quickstart
