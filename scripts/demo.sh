#!/usr/bin/env bash
# The whole pipeline on the built-in synthetic dataset: records -> train -> eval -> export -> predict.
# No downloads. Run from the repository root with the package installed (see README).
set -euo pipefail
OUT=${DEMO_OUT:-runs/demo}
DATA=${DEMO_DATA:-data/demo}
START=$(date +%s)

python build_tfrecords.py --dataset synthetic --out "$DATA"
python train.py  --config configs/demo.yaml --set data.dir="$DATA" --set train.run_dir="$OUT" "$@"
python eval.py   --config configs/demo.yaml --set data.dir="$DATA" --set train.run_dir="$OUT" --once
python export.py --config configs/demo.yaml --set data.dir="$DATA" --set train.run_dir="$OUT" --out "$OUT/model.pb"
python predict.py --model "$OUT/model.pb" --out "$OUT/predictions" "$DATA"/source/JPEGImages/000000.jpg "$DATA"/source/JPEGImages/000001.jpg

echo
echo "demo finished in $(( $(date +%s) - START )) s"
echo "  mIoU:          $(python -c "import json,sys; print('%.2f%%' % (100*json.load(open(sys.argv[1]))['miou']))" "$OUT/eval/latest.json")"
echo "  segmentation:  $OUT/predictions/000000_overlay.png"
echo "  tensorboard:   tensorboard --logdir $OUT"
