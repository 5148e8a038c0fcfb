"""tools/gpu_recipe.py's two choices, on made-up run rows: neither may look at test accuracy."""
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("gpu_recipe", Path(__file__).resolve().parent.parent / "tools" / "gpu_recipe.py")
gpu_recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_recipe)


def cv_row(recipe, fold, right, test=0.99):
    return {"recipe": recipe, "val_writers": fold, "val_accuracy": right / 1500, "n_val": 1500, "test_accuracy": test}


def test_recipe_chosen_on_held_out_writers_over_complete_folds_only():
    rows = [cv_row(r, "1-10", 1495) for r in gpu_recipe.RECIPES]
    rows += [cv_row(r, "41-50", 1494) for r in gpu_recipe.RECIPES if r != "long"]
    rows[1] = cv_row("in96", "1-10", 1497, test=0.90)  # best held-out, worst test: it still wins
    rows.append(cv_row("long", "41-50", 1500) | {"error": "killed"})  # a cut-off run does not count
    winner, complete, score = gpu_recipe.choose_recipe(rows, ["1-10", "41-50"])
    assert complete == ["1-10"] and winner == "in96" and score["in96"] == 1497 and score["base"] == 1495


def test_recipe_ties_go_to_the_earlier_and_no_complete_fold_keeps_base():
    tie = [cv_row(r, "1-10", 1495) for r in gpu_recipe.RECIPES]
    assert gpu_recipe.choose_recipe(tie, ["1-10"])[0] == list(gpu_recipe.RECIPES)[0]
    partial = [cv_row("in128", "1-10", 1500)]
    assert gpu_recipe.choose_recipe(partial, ["1-10"])[:2] == ("base", [])


def final_row(split, seed, val, loss, test):
    return {"split": split, "seed": seed, "name": f"{split}-s{seed}", "val_accuracy": val, "val_loss": loss, "test_accuracy": test}


@pytest.mark.parametrize("rows, seed", [
    # validation accuracy first, whatever the test says
    ([final_row("writer", 0, 0.996, 0.12, 0.990), final_row("writer", 1, 0.994, 0.10, 0.999)], 0),
    # equal validation accuracy: the lower validation loss
    ([final_row("writer", 0, 0.996, 0.12, 0.999), final_row("writer", 1, 0.996, 0.11, 0.990)], 1),
])
def test_seed_chosen_by_validation_with_its_twin(rows, seed):
    rows = rows + [final_row("random", s, 0.99, 0.1, 0.99) for s in (0, 1)]
    assert gpu_recipe.choose_seed(rows) == {"seed": seed, "writer": f"writer-s{seed}", "random": f"random-s{seed}"}


def test_seed_without_a_finished_twin_is_not_chosen():
    rows = [final_row("writer", 0, 1.0, 0.0, 1.0), final_row("writer", 1, 0.99, 0.2, 0.99),
            final_row("random", 0, 0.99, 0.1, 0.99) | {"error": "killed"}, final_row("random", 1, 0.99, 0.1, 0.99)]
    assert gpu_recipe.choose_seed(rows)["seed"] == 1
    assert gpu_recipe.choose_seed(rows[:1]) is None


def test_pack_sends_the_chosen_runs_without_checkpoints_in_parts_that_join_up(tmp_path):
    import io
    import json
    import os
    import tarfile

    work, out = tmp_path / "work", tmp_path / "out"
    files = {}
    for name in ("w-s0", "r-s0", "w-s1"):
        (work / name).mkdir(parents=True)
        for f in ("config.json", "model.safetensors", "checkpoint.safetensors", ".model.safetensors.tmp-1"):
            files[f"{name}/{f}"] = os.urandom(9000 if f == "model.safetensors" else 300)
            (work / name / f).write_bytes(files[f"{name}/{f}"])
    summary = {"chosen": {"writer": "w-s0", "random": "r-s0"}}
    gpu_recipe.pack(work, summary, out)
    assert json.loads((out / "recipe_summary.json").read_text()) == summary
    parts = sorted(out.glob("chosen.tar.part*"))
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert got == {k: v for k, v in files.items() if k.split("/")[0] in ("w-s0", "r-s0")
                   and k.split("/")[1] in ("config.json", "model.safetensors")}

    # Parts of at most part_bytes; joined in order they are the tar.
    small = gpu_recipe.tar_in_parts([(work / "w-s1" / "model.safetensors", "m")], tmp_path / "small", "x", part_bytes=4000)
    assert [p.name for p in small] == [f"x.tar.part{i}" for i in range(len(small))] and len(small) >= 3
    assert all(p.stat().st_size <= 4000 for p in small)
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in small))) as tar:
        assert tar.extractfile("m").read() == files["w-s1/model.safetensors"]
