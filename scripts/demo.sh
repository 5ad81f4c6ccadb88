#!/usr/bin/env bash
# The whole pipeline on the built-in synthetic dataset: records -> train -> eval -> export -> predict.
# No downloads. Run from the repository root with the package installed (see README).
# Extra arguments (e.g. --set train.steps=500) go to train, eval and export alike.
set -euo pipefail
OUT=${DEMO_OUT:-runs/demo}
DATA=${DEMO_DATA:-data/demo}
START=$(date +%s)

python build_tfrecords.py --dataset synthetic --out "$DATA"
python train.py  --config configs/demo.yaml --set data.dir="$DATA" --set train.run_dir="$OUT" "$@"
python eval.py   --config configs/demo.yaml --set data.dir="$DATA" --set train.run_dir="$OUT" --once "$@"
python export.py --config configs/demo.yaml --set data.dir="$DATA" --set train.run_dir="$OUT" --out "$OUT/model.pb" "$@"
# segment the first two val images (never trained on)
VAL=$(head -n 2 "$DATA"/source/ImageSets/Segmentation/val.txt)
python predict.py --model "$OUT/model.pb" --out "$OUT/predictions" --overwrite $(printf "$DATA/source/JPEGImages/%s.jpg " $VAL)

echo
echo "demo finished in $(( $(date +%s) - START )) s"
echo "  mIoU:          $(python -c "import json,sys; print('%.2f%%' % (100*json.load(open(sys.argv[1]))['miou']))" "$OUT/eval/latest.json")"
echo "  segmentation:  $OUT/predictions/$(head -n 1 "$DATA"/source/ImageSets/Segmentation/val.txt)_overlay.png (a val image)"
echo "  tensorboard:   tensorboard --logdir $OUT"
