#!/usr/bin/env bash
# Build the Java kit, regenerate the golden bundles of the shipped weights, check them bit for bit.
#
#   java/run.sh [--keep DIR]     build, regenerate, check; bundles kept in DIR with --keep
#   java/run.sh --install-jdk    only install a JDK 17 if javac is missing (CI: before pytest)
#
# Uses $PYTHON (default: python on PATH) with pdinfer's dependencies. When torch imports, the
# bundles get torch columns (`python -m exporter.golden`); otherwise they hold the reference
# outputs only (`python -m pdinfer golden`). Installs a JDK 17 with apt-get when javac is missing. weights/pd_light.pdw and
# weights/pd_model.pdw are used when present; otherwise seed models are exported with
# `python -m exporter` into the work directory. pd_light and pd_model are also checked computing
# in int8 (docs/FORMAT.md 1.3), quantized by `python -m exporter.compress --weights int8
# --activations int8` into the work directory. Bundles go to a temporary directory, removed
# at exit, unless --keep is given. Exits non-zero if any check fails.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

install_jdk() {
    command -v javac >/dev/null 2>&1 && return
    echo "javac not found: installing openjdk-17-jdk-headless with apt-get" >&2
    local sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
}

keep=""
case "$*" in
    "") ;;
    --install-jdk) install_jdk; exit 0 ;;
    --keep\ *) [[ $# -eq 2 ]] && keep="$2" ;;
esac
if [[ $# -gt 0 && -z $keep ]]; then
    echo "usage: $0 [--keep DIR | --install-jdk]" >&2
    exit 2
fi

install_jdk
java_major="$(javac -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/')"
if [[ $java_major -lt 17 ]]; then
    echo "error: javac $java_major found; the kit needs Java 17 or newer" >&2
    exit 2
fi

build="$here/build"
rm -rf "$build"
javac -Xlint:all,-serial -Werror -d "$build" $(find "$here/src" -name '*.java')
echo "built $build"

if [[ -n $keep ]]; then
    work="$keep"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi

if "$python" -c "import torch" >/dev/null 2>&1; then
    golden=(-m exporter.golden)
else
    echo "torch does not import: bundles hold pdinfer's reference outputs only" >&2
    golden=(-m pdinfer golden --force)  # bundles are made again on every run
fi

status=0
declare -A seed_weights  # model -> its float32 weight file
for model in pd_light pd_model pd_light_se; do
    weights="$root/weights/$model.pdw"
    if [[ ! -f $weights ]]; then
        weights="$work/$model.pdw"
        extra=()
        [[ $model != pd_model ]] && extra=(--random-bn)  # untrained batch norm would be the identity
        "$python" -m exporter "$model" "$weights" --force "${extra[@]}"
    fi
    seed_weights[$model]="$weights"
    "$python" "${golden[@]}" "$weights" --out "$work/golden"
    echo
    if ! java -cp "$build" pdinfer.GoldenRunner "$weights" "$work/golden/$model.golden.pdw"; then
        status=1
    fi
    echo
done
# The shipped compressed files (docs/FORMAT.md 1.2): reference outputs only (exporter.golden
# rebuilds seed models, whose BatchNorm these files have folded).
for weights in "$root"/weights/*.int8.pdw "$root"/weights/*.f16.pdw "$root"/weights/*.bf16.pdw; do
    [[ -f $weights ]] || continue
    "$python" -m pdinfer golden --force "$weights" --out "$work/golden"
    echo
    if ! java -cp "$build" pdinfer.GoldenRunner "$weights" "$work/golden/$(basename "$weights" .pdw).golden.pdw"; then
        status=1
    fi
    echo
done
# Seed models computing in int8: bundles of the integer reference's values (reference only).
for model in pd_light pd_model; do
    weights="$work/$model.q8.pdw"
    "$python" -m exporter.compress "${seed_weights[$model]}" --weights int8 --activations int8 --out "$weights" --force
    "$python" -m pdinfer golden --force "$weights" --out "$work/golden"
    echo
    if ! java -cp "$build" pdinfer.GoldenRunner "$weights" "$work/golden/$model.q8.golden.pdw"; then
        status=1
    fi
    echo
done
if [[ $status -eq 0 ]]; then
    echo "run.sh: all golden checks passed"
else
    echo "run.sh: golden checks FAILED" >&2
fi
exit $status
