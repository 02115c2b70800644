#!/bin/sh
# Creates (or reuses) the virtual environment with real Django that the interop tests drive,
# and prints the path of its python. Usage: scripts/django-env.sh [VENV_DIR]
# Default VENV_DIR: target/django-venv under the repository root. Needs python3 with venv.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${CLOAKROOM_DJANGO_VENV:-$root/target/django-venv}}
py=$venv/bin/python
# The tests run as parallel processes (nextest), each asking for the venv: one makes it while
# the others wait on this lock, instead of racing `python3 -m venv` into the same folder.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ -x "$py" ] && "$py" -c 'import django, redis; assert django.VERSION[:2] == (5, 2)' 2>/dev/null; then
  echo "$py"
  exit 0
fi
python3 -m venv "$venv" >&2
"$py" -m pip install --quiet --disable-pip-version-check 'Django>=5.2,<5.3' redis 'psycopg[binary]' PyMySQL >&2
"$py" -c 'import django, redis; assert django.VERSION[:2] == (5, 2)' >&2
echo "$py"
