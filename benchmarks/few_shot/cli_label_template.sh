#!/usr/bin/env bash
# The CLI's few-shot command on SST-2 at 8 shots, seeds 0-4, without and with --label-template
# (the zero-shot template and descriptions of nlptl/fewshot/splits.py). Prints one JSON line per run
# and the two means; run directories go under ${OUT:-reports/cli-label-template}, their stderr to $OUT.log.
#   bash benchmarks/few_shot/cli_label_template.sh
set -euo pipefail
OUT=${OUT:-reports/cli-label-template}
if [ -x .venv/bin/nlptl ]; then PATH="$PWD/.venv/bin:$PATH"; fi  # what `make setup` installed
mkdir -p "$(dirname "$OUT")"
DATA=${DATA:-../shared/data}
TEMPLATE="This movie review is {}."
DESCRIPTIONS='{"negative": ["negative", "bad", "terrible"], "positive": ["positive", "good", "great"]}'
for seed in 0 1 2 3 4; do
  for variant in plain label_template; do
    extra=()
    if [ "$variant" = label_template ]; then extra=(--label-template "$TEMPLATE" --label-descriptions "$DESCRIPTIONS"); fi
    nlptl train --task text-classification --dataset sst2 --data-dir "$DATA" --shots 8 --seed "$seed" \
      --method contrastive --encoder minilm --output-dir "$OUT/$variant-seed$seed" --overwrite "${extra[@]}" \
      2>>"$OUT.log" | tail -1 | sed "s/^/{\"variant\": \"$variant\", \"seed\": $seed, \"result\": /; s/\$/}/"
  done
done | tee "$OUT.jsonl"
python - "$OUT.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for variant in ("plain", "label_template"):
    acc = [r["result"]["accuracy"] for r in rows if r["variant"] == variant]
    print(f"{variant}: mean accuracy {statistics.fmean(acc):.4f} over {len(acc)} seeds {acc}")
PY
