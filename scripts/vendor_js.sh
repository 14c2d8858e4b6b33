#!/usr/bin/env bash
# Vendor the JavaScript the book's pages need, so the HTML works with no network:
#   require.js               (requirejs 2.3.7)                loads the widget bundle
#   widgets/embed-amd.js     (@jupyter-widgets/html-manager 1.0.15, with its font files)
#                            renders ipywidgets from the state saved in the executed notebooks
#   mathjax/es5/             (mathjax 3.2.2)                   renders the equations
# into DEST (default book/_vendor, git-ignored), which _config.yml hands to Sphinx as a static
# path. Idempotent: does nothing when DEST already holds these versions. The tarballs come from
# the npm registry (`npm pack`) and are checked against the sha256 sums below.
#
# Usage: scripts/vendor_js.sh [DEST]        FORCE=1 scripts/vendor_js.sh   (re-vendor)
set -euo pipefail

cd "$(dirname "$0")/.."
DEST=${1:-book/_vendor}
STAMP_TEXT="html-manager 1.0.15; requirejs 2.3.7; mathjax 3.2.2"

declare -A SHA256=(
  [jupyter-widgets-html-manager-1.0.15.tgz]=2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638
  [requirejs-2.3.7.tgz]=31f3330c978fb28684622fe71165dc946432cf0210b2ea8a1ca0233e70f2737d
  [mathjax-3.2.2.tgz]=1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
)

if [[ -z "${FORCE:-}" && -f "$DEST/.vendored" && "$(cat "$DEST/.vendored")" == "$STAMP_TEXT" \
      && -f "$DEST/require.js" && -f "$DEST/widgets/embed-amd.js" && -f "$DEST/mathjax/es5/tex-mml-chtml.js" ]]; then
  exit 0
fi

command -v npm >/dev/null || {
  echo "vendor_js.sh: npm is needed to fetch the pages' JavaScript (apt-get install -y npm, or install Node.js)" >&2
  exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "vendoring JavaScript into $DEST ($STAMP_TEXT)"
(cd "$work" && npm pack --silent @jupyter-widgets/html-manager@1.0.15 requirejs@2.3.7 mathjax@3.2.2 >/dev/null) || {
  echo "vendor_js.sh: 'npm pack' failed; the npm registry must be reachable (see npm's message above)" >&2
  exit 1
}
for tgz in "${!SHA256[@]}"; do
  [[ -f "$work/$tgz" ]] || { echo "vendor_js.sh: npm pack did not produce $tgz" >&2; exit 1; }
  got=$(sha256sum "$work/$tgz" | cut -d' ' -f1)
  if [[ "$got" != "${SHA256[$tgz]}" ]]; then
    echo "vendor_js.sh: checksum mismatch for $tgz (got $got, expected ${SHA256[$tgz]}); refusing to vendor it" >&2
    exit 1
  fi
done

new="$work/vendor"
mkdir -p "$new/widgets" "$new/mathjax" "$work/hm" "$work/rq" "$work/mj"
tar xzf "$work/jupyter-widgets-html-manager-1.0.15.tgz" -C "$work/hm"
tar xzf "$work/requirejs-2.3.7.tgz" -C "$work/rq"
tar xzf "$work/mathjax-3.2.2.tgz" -C "$work/mj"

cp "$work/rq/package/require.js" "$new/require.js"
# embed-amd.js loads its icon fonts from next to itself: take them along (not the maps or the
# other bundles).
cp "$work/hm/package/dist/embed-amd.js" "$new/widgets/"
find "$work/hm/package/dist" -maxdepth 1 -type f \
  \( -name '*.woff' -o -name '*.woff2' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
  -exec cp {} "$new/widgets/" \;
cp -r "$work/mj/package/es5" "$new/mathjax/es5"
# Licences: MathJax ships LICENSE, html-manager its bundled packages' notices, requirejs keeps its
# MIT header inside require.js.
cp "$work/mj/package/LICENSE" "$new/mathjax/LICENSE"
for f in "$work/hm/package/dist/"*.LICENSE.txt; do
  if [[ -f "$f" ]]; then cp "$f" "$new/widgets/"; fi
done
printf '%s' "$STAMP_TEXT" > "$new/.vendored"

for f in require.js widgets/embed-amd.js mathjax/es5/tex-mml-chtml.js; do
  [[ -s "$new/$f" ]] || { echo "vendor_js.sh: $f missing from the packages; the package layout changed" >&2; exit 1; }
done

# Swap the folder in whole: a failed run never leaves a half-filled DEST behind.
mkdir -p "$(dirname "$DEST")"
old="$DEST.old.$$"
[[ -e "$DEST" ]] && mv "$DEST" "$old"
mv "$new" "$DEST"
rm -rf "$old"
echo "vendored: $(du -sh "$DEST" | cut -f1) in $DEST"
