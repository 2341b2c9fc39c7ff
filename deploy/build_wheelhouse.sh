#!/usr/bin/env bash
# Build the edge-sr wheel (models inside) and an offline wheelhouse for the target platform, so a Pi
# with no internet installs with `pip install --no-index`. Usage: build_wheelhouse.sh OUT [PLATFORM]
# PLATFORM: aarch64 (default, Raspberry Pi OS Bookworm 64-bit, Python 3.11) or host (this machine).
set -euo pipefail
out=${1:?usage: build_wheelhouse.sh OUT [aarch64|host]}
platform=${2:-aarch64}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
py=${PYTHON:-$root/.venv/bin/python}
mkdir -p "$out"
rm -f "$out"/edge_sr-*.whl
export SOURCE_DATE_EPOCH=315532800  # reproducible wheel: same sources, same bytes, same release id
"$py" -m pip wheel --quiet --no-deps --no-build-isolation -w "$out" "$root"
if [ "$platform" = host ]; then
  "$py" -m pip download --quiet --only-binary=:all: -d "$out" -r "$here/pi-requirements.txt"
else
  # pip takes --platform tags literally: list every manylinux tag Bookworm's glibc 2.36 runs.
  tags=(--platform manylinux2014_aarch64)
  for minor in $(seq 17 36); do tags+=(--platform "manylinux_2_${minor}_aarch64"); done
  "$py" -m pip download --quiet --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
    "${tags[@]}" -d "$out" -r "$here/pi-requirements.txt"
fi
cp "$here/pi-requirements.txt" "$out/"
# The release id: a hash of everything that would be installed, so an unchanged deploy is a no-op.
(cd "$out" && ls ./*.whl pi-requirements.txt | sort | xargs sha256sum | sha256sum | cut -c1-12) > "$out/RELEASE"
echo "wheelhouse $out ($(ls "$out"/*.whl | wc -l) wheels, release $(cat "$out/RELEASE"))"
