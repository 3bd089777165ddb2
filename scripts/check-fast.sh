#!/usr/bin/env bash
# The fast check: formatting, clippy with -D warnings, and the workspace's unit, property and
# in-process tests, with nothing to install but the Rust toolchain (rust-toolchain.toml) and no
# engine to start. Tests that need Kafka or PostgreSQL say they did not run unless
# TRIBUTARY_TEST_KAFKA / TRIBUTARY_TEST_POSTGRES name one; `tributary bench`'s Mosquitto tests
# run when `mosquitto` is installed. scripts/test.sh runs these and everything else
# (docs/testing.md).
#
# Every step runs even when an earlier one failed; the script exits non-zero if any step failed
# and lists them at the end.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rust_format_and_lint_steps
rust_test_step
if [ -d web/node_modules ]; then
    step "dashboard: types, Vitest, web/dist equals a fresh build" bash scripts/web_check.sh
else
    skip "dashboard checks" "web/node_modules is missing (npm ci --prefix web)"
fi
finish check-fast.sh
