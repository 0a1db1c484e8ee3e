#!/usr/bin/env bash
# Runs each fuzz target for a bounded time: fuzz/run.sh [SECONDS_PER_TARGET] (default 1800).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); its nightly flags are enabled on the stable
# toolchain with RUSTC_BOOTSTRAP=1. Seeds: the committed fixtures and the small models in
# fuzz/seeds/; decode_find_rewrite's inputs start with 4 bytes choosing the setting, so its
# seeds are the small models behind each selector of SELECTORS in bodies/mod.rs. Crashes land
# in fuzz/artifacts/TARGET/, logs in fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-1800}
export RUSTC_BOOTSTRAP=1
# -a: debug assertions, so arithmetic overflow panics as it does in the dev profile.
cargo fuzz build -a
triple=$(rustc -vV | sed -n 's/^host: //p')
mkdir -p logs
status=0
for target in decode_find decode_find_rewrite; do
    mkdir -p "corpus/$target" "artifacts/$target"
    if [ "$target" = decode_find ]; then
        cp ../fixtures/*.onnx seeds/*.onnx "corpus/$target/"
        # max_len keeps the fixtures (~360 KB) whole.
        max_len=400000
    else
        # Each selector before each small seed. The fixtures stay out: mutants of their
        # 38 400- and 64 000-element tables run at ~12 per second (FUZZING.md).
        sed -n 's/^    \[0x\(..\), 0x\(..\), 0x\(..\), 0x\(..\)\],.*/\1\2\3\4/p' bodies/mod.rs | while read -r sel; do
            for seed in seeds/*.onnx; do
                { printf '%b' "\\x${sel:0:2}\\x${sel:2:2}\\x${sel:4:2}\\x${sel:6:2}"; cat "$seed"; } \
                    >"corpus/$target/$sel-$(basename "$seed")"
            done
        done
        max_len=8192
    fi
    # rss_limit_mb bounds memory per input. The binary `cargo fuzz run` would start, started
    # directly: no cargo process stays.
    "target/$triple/release/$target" "corpus/$target" \
        -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -timeout=60 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"logs/$target.log" 2>&1 || status=$?
    tail -n 25 "logs/$target.log"
done
exit "$status"
