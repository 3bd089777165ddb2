#!/usr/bin/env bash
# The dashboard's checks (web/): TypeScript types, the Vitest unit tests, and that the committed
# bundle web/dist, which the binary embeds, equals a fresh build of web/ (docs/dashboard.md says why
# the bundle is committed). Needs web/node_modules (npm ci --prefix web; scripts/provision.sh does it).
#   bash scripts/web_check.sh          all three
#   bash scripts/web_check.sh --fix    rebuild web/dist instead of comparing (then commit it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../web"
if [ ! -d node_modules ]; then
    echo "web_check.sh: web/node_modules is missing; run: npm ci --prefix web" >&2
    exit 2
fi
npx tsc --noEmit -p .
npx vitest run --reporter=dot
if [ "${1:-}" = "--fix" ]; then
    npx vite build --logLevel warn
    echo "web/dist rebuilt; commit it with the source change"
    exit 0
fi
fresh=$(mktemp -d /tmp/tributary-web-dist.XXXXXX)
trap 'rm -rf "$fresh"' EXIT
npx vite build --logLevel warn --outDir "$fresh" --emptyOutDir
if ! diff -r dist "$fresh" >/dev/null; then
    diff -r --brief dist "$fresh" | head -20 >&2
    echo "web_check.sh: web/dist is not what web/ builds to; run 'bash scripts/web_check.sh --fix' and commit web/dist" >&2
    exit 1
fi
echo "web/dist equals a fresh build"
