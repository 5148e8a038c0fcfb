# Each target sets up .venv from requirements.txt when it is missing or older than it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup demo test bench train-release clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) demo/app.py

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py

# The release models, as in their cards (long on a CPU; seconds on a GPU).
train-release: $(STAMP)
	$(PY) tools/make_synth_train.py --out out/synth_train.npz
	$(PY) train.py --model cnn --split writer --extra-train out/synth_train.npz --out runs/chnmnist-cnn
	$(PY) train.py --model resnet18 --split writer --extra-train out/synth_train.npz --swa-epochs 6 --input-size 128 --out runs/chnmnist-resnet18

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
