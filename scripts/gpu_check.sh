#!/usr/bin/env bash
# What CPU-only CI cannot check: every GPU path of negate, once, with throughput figures, on a CUDA machine.
#
#   bash scripts/gpu_check.sh [LOG_DIR]          # from the repository root; default LOG_DIR outputs/gpu_check
#
# Steps (each under its own time limit; the pass goes on after a failure and skips what the budget no longer fits):
#   infer_gpu / infer_cpu  the shipped model over negate/sample_data on the GPU and on the CPU; parity compares them
#   train_ensemble_gpu     negate train experiment=ensemble trainer=gpu (frozen extraction + bf16 fine-tuning,
#                          finetune.num_workers=auto)
#   train_aligned_gpu      negate train experiment=finetuned: TAEF2 reconstructions made on the GPU
#                          (needs NEGATE_TAEF2_DIR or shared/models/taef2), then infer with that model
#   bench_*                scripts/bench_finetune.py, bench_features.py --device cuda, bench_encoders.py --device cuda
# Offline (HF_HUB_OFFLINE=1): hub encoders run with random weights in the benches only.
set -u
LOG_DIR=${1:-outputs/gpu_check}
BUDGET=${GPU_CHECK_BUDGET:-480}   # seconds; a step that would start later than this is skipped
PY=${PYTHON:-python3}
mkdir -p "$LOG_DIR"
LOG=$LOG_DIR/gpu_check.log
WORK=$(mktemp -d)
export HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONUNBUFFERED=1 NEGATE_HOME=$WORK/home
SUMMARY=()

step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    if (( SECONDS + 20 > BUDGET )); then SUMMARY+=("$name skipped (budget)"); return; fi
    (( SECONDS + limit > BUDGET )) && limit=$(( BUDGET - SECONDS ))
    echo "=== $name (limit ${limit}s): $*" >>"$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    SUMMARY+=("$name rc=$rc $((SECONDS - t0))s")
    echo "--- $name rc=$rc $((SECONDS - t0))s" | tee -a "$LOG"
}

sample=negate/sample_data
step env 60 bash -c "nvidia-smi -L; $PY -c 'import torch, timm, lightning; print(\"torch\", torch.__version__, \"timm\", timm.__version__, \"lightning\", lightning.__version__, \"cuda\", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else \"\")'"

# each run its own output dir, so the runs share no feature cache
INFER=($PY -m negate.infer path=$sample output=csv quiet=true)
step infer_gpu 120 "${INFER[@]}" ckpt=shipped trainer=gpu output_file="$WORK/gpu.csv" paths.output_dir="$WORK/out_gpu"
step infer_cpu 120 env CUDA_VISIBLE_DEVICES= "${INFER[@]}" ckpt=shipped output_file="$WORK/cpu.csv" \
    paths.output_dir="$WORK/out_cpu"
step parity 30 $PY - "$WORK/cpu.csv" "$WORK/gpu.csv" <<'EOF'
import csv, sys
cpu, gpu = ({r["path"]: r for r in csv.DictReader(open(p))} for p in sys.argv[1:3])
assert cpu.keys() == gpu.keys() and cpu, "CPU and GPU runs scored different images"
diff = [abs(float(cpu[k]["prob_synthetic"]) - float(gpu[k]["prob_synthetic"])) for k in cpu]
flips = [k for k in cpu if cpu[k]["verdict"] != gpu[k]["verdict"]]
print(f"{len(cpu)} images: max |p_cpu - p_gpu| {max(diff):.2e}, mean {sum(diff) / len(diff):.2e}; "
      f"verdicts differ on {len(flips)}: {flips[:5]}")
for name, rows in (("cpu", cpu), ("gpu", gpu)):
    counts = {}
    for r in rows.values():
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(name, dict(sorted(counts.items())))
sys.exit(1 if max(diff) > 1e-2 else 0)
EOF

step train_ensemble_gpu 200 $PY -m negate.train experiment=ensemble trainer=gpu model_name=gpu_ensemble \
    'ensemble.overrides.finetuned_no_aligned=["finetune.patches_per_image=4","finetune.max_epochs=6","finetune.patience=2","finetune.num_workers=auto"]' \
    paths.output_dir="$WORK/out_train_ensemble"
step infer_trained_ensemble 90 "${INFER[@]}" ckpt="$NEGATE_HOME/models/gpu_ensemble" trainer=gpu output_file="$WORK/ens.csv" \
    paths.output_dir="$WORK/out_trained_ensemble"

step bench_finetune_effnet128 60 $PY scripts/bench_finetune.py --pretrained --patch 128 --batch 256 --steps 20
step bench_finetune_effnet256 60 $PY scripts/bench_finetune.py --pretrained --patch 256 --batch 128 --steps 20
step bench_finetune_dinov3 90 $PY scripts/bench_finetune.py --encoder dinov3 --patch 256 --batch 64 --steps 10 --grid 16
step bench_features_cuda 120 $PY scripts/bench_features.py --device cuda --data $sample --n 100 --sizes 256 512 1024 \
    --threads 8 --modes eager --workers 0 --repeat 2 --batch 16
step train_aligned_gpu 150 $PY -m negate.train experiment=finetuned trainer=gpu model_name=gpu_aligned \
    finetune.max_epochs=4 paths.output_dir="$WORK/out_train_aligned"
step infer_trained_aligned 90 "${INFER[@]}" ckpt="$NEGATE_HOME/models/gpu_aligned" trainer=gpu output_file="$WORK/aligned.csv" \
    paths.output_dir="$WORK/out_trained_aligned"
step bench_encoders_cuda 120 $PY scripts/bench_encoders.py --device cuda --full --batch 32

{
    echo "=== summary"
    printf '%s\n' "${SUMMARY[@]}"
    grep -h '^{' "$LOG" | grep -E 'train_patches_per_s' || true
} | tee -a "$LOG"
