#!/bin/sh
# Regenerates the example figures of the README's "Pictures" section into docs/img/.
# Usage (from the repository root, with the venv's fsmrun on PATH): sh docs/img/examples.sh [DIR]
# DIR (default /tmp/fsmrun-examples) receives the runs; CPU is enough (a few minutes).
set -eu
dir=${1:-/tmp/fsmrun-examples}
img=docs/img

# One run with a capture of attention maps and hidden states after epoch 3.
fsmrun train regex_a --results-dir "$dir/one" --device cpu --set 'train.capture_epochs=[3]'
fsmrun plot regex_a --results-dir "$dir/one" --string-index 1 >/dev/null
for figure in learning_curves accuracy_by_length attention hidden_states automaton; do
    # automaton.png exists only where Graphviz `dot` is installed
    [ -f "$dir"/one/regex_a/*/v1/plots/$figure.png ] || continue
    cp "$dir"/one/regex_a/*/v1/plots/$figure.png "$img/run_$figure.png"
done

# Two languages x two architectures x two seeds, small and short, for the comparison figures.
for exp in regex_a parity; do
    for arch in transformer lstm; do
        for seed in 0 1; do
            fsmrun train "$exp" --results-dir "$dir/set" --device cpu --seed "$seed" \
                --epochs 4 --set data.n_train=500 --set "model.arch=$arch"
        done
    done
done
fsmrun plot -e regex_a -e parity --by experiment,arch --results-dir "$dir/set" --out "$dir/set/plots"
cp "$dir/set/plots/accuracy_by_length.png" "$img/set_accuracy_by_length.png"
cp "$dir/set/plots/ood_accuracy.png" "$img/set_ood_accuracy.png"

# Shrink the PNGs for the repository: a 128-colour palette (Pillow comes with matplotlib).
python - "$img"/run_*.png "$img"/set_*.png <<'PY'
import sys

from PIL import Image

for path in sys.argv[1:]:
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)
PY
