#!/usr/bin/env bash
# axe-core, the accessibility checker the browser tests inject (tests/pages/test_browser.py), from
# the npm registry with `npm pack`, checked against the integrity hash npm publishes for it
# (`npm view axe-core@4.14.1 dist.integrity`), into .cache/ (not committed; MPL-2.0, its LICENSE beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.14.1
INTEGRITY="sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
dest=".cache/axe-core-$VERSION"
if [[ -f "$dest/axe.min.js" ]]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "axe-core@$VERSION" >/dev/null)
tarball="$tmp/axe-core-$VERSION.tgz"
got="sha512-$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tarball")"
if [[ "$got" != "$INTEGRITY" ]]; then
  echo "axe-core $VERSION: the tarball's hash $got is not the published $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$tmp"
mkdir -p "$dest"
cp "$tmp/package/axe.min.js" "$tmp/package/LICENSE" "$dest/"
echo "axe-core $VERSION in $dest (integrity checked)"
