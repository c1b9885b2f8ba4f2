#!/bin/sh
# Renders every Graphviz source here (*.dot) to SVG next to it.
# Needs Graphviz (`apt-get install graphviz` on Debian).
# Usage: docs/diagrams/render.sh
set -eu
cd "$(dirname "$0")"
for src in *.dot; do
  dot -Tsvg "$src" -o "${src%.dot}.svg"
  echo "rendered ${src%.dot}.svg"
done
