"""Train the two seed models on synthetic PRPD patterns and ship their weights.

    python -m exporter.train            # writes weights/pd_light.pdw, weights/pd_model.pdw,
                                        # weights/samples/, weights/README.md

Everything is seeded (data: exporter.synthetic seeds below; torch: TORCH_SEED) and runs on
the CPU with one torch thread by default, so a rerun on the same torch version reproduces the
files (a different thread count or torch build may change the last bits of the float sums and
so the trained weights a little; the accuracies stay about the same).

Losses (the models end in an activation, so the loss is taken on the pre-activation values,
captured with a forward hook on that last Sigmoid/Softmax module; the shipped model is the
unchanged architecture):

* PDLightModel ends in Softmax -> cross-entropy on the pre-softmax logits (the same as NLL on
  the log of the outputs, but numerically stable).
* PDModel ends in Sigmoid -> binary cross-entropy (with logits) against one-hot targets.  A
  sigmoid head scores each class independently; BCE trains every output to be the probability
  "this defect is present", so the shipped outputs are meaningful on their own (right class
  near 1, the others near 0).  Cross-entropy on pre-sigmoid logits would only fix differences
  between logits and leave the sigmoid outputs uncalibrated (they could all be near 1).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from . import synthetic
from .synthetic import CLASSES

TRAIN_SEED = 11        # exporter.synthetic seed of the training set
HELDOUT_SEED = 22      # ... of the held-out set (never used for training; see README note)
SAMPLE_SEED = 33       # ... of the stream the shipped samples are taken from
TORCH_SEED = 0         # initial weights, shuffling, augmentation
N_TRAIN = 80           # per class -> 480 training images per model
N_HELDOUT = 100        # per class -> 600 held-out images
N_SAMPLES = 3          # shipped samples per class
MAX_SAMPLE_TRIES = 50  # per class: give up (error) if fewer than N_SAMPLES pass in this many
BATCH = 32

# name -> (model class name in exporter.models, epochs, Adam max learning rate, loss,
#          max random phase roll in columns for augmentation (0 = none))
RECIPES = {
    "pd_light": ("PDLightModel", 20, 3e-3, "ce", 10),
    "pd_model": ("PDModel", 20, 2e-3, "bce", 10),
}
REPRODUCE = "python -m exporter.train"


def nearest_mean_baseline(x_tr, y_tr, x_te, y_te):
    """Accuracy of classifying each held-out image by the nearest (Euclidean) class-mean image."""
    n_cls = len(CLASSES)
    means = np.stack([x_tr[y_tr == c].reshape(-1, x_tr[0].size).mean(0) for c in range(n_cls)])
    flat = x_te.reshape(len(x_te), -1).astype(np.float64)
    d = (flat ** 2).sum(1)[:, None] - 2 * flat @ means.T + (means ** 2).sum(1)[None]
    pred = d.argmin(1)
    return float((pred == y_te).mean()), pred


def confusion(y, pred):
    n = len(CLASSES)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def _final_activation(model):
    import torch.nn as nn
    acts = [m for m in model.modules() if isinstance(m, (nn.Sigmoid, nn.Softmax))]
    if not acts:
        raise ValueError("model has no final Sigmoid/Softmax module")
    return acts[-1]


def train_one(name, x_tr, y_tr, log):
    import torch
    import torch.nn.functional as F

    from . import models

    cls_name, epochs, lr, loss_kind, roll = RECIPES[name]
    torch.manual_seed(TORCH_SEED)
    model = getattr(models, cls_name)(list(CLASSES))
    captured = {}
    hook = _final_activation(model).register_forward_hook(
        lambda mod, inp, out: captured.__setitem__("logits", inp[0]))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(x_tr) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(TORCH_SEED)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    width = xt.shape[-1]
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for k in range(0, len(xt), BATCH):
            idx = perm[k:k + BATCH]
            xb, yb = xt[idx], yt[idx]
            if roll:  # random circular phase shift: the sensor's synchronisation offset
                shift = torch.randint(-roll, roll + 1, (len(idx),), generator=gen)
                cols = (torch.arange(width)[None, :] - shift[:, None]) % width
                xb = xb.gather(3, cols[:, None, None, :].expand_as(xb))
            model(xb)
            z = captured["logits"]
            if loss_kind == "ce":
                loss = F.cross_entropy(z, yb)
            else:
                loss = F.binary_cross_entropy_with_logits(z, F.one_hot(yb, len(CLASSES)).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"  {name} epoch {epoch + 1}/{epochs} loss {total / len(xt):.4f} "
            f"({time.perf_counter() - t0:.0f} s)")
    hook.remove()
    model.eval()
    return model, time.perf_counter() - t0


def torch_predict(model, x, batch=200):
    import torch
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[k:k + batch])).numpy()
                               for k in range(0, len(x), batch)])


def _try_pdinfer(paths, log):
    """{name: pdinfer.Model} or None with the reason, when pdinfer is missing or fails."""
    try:
        import pdinfer
        return {name: pdinfer.load(path) for name, path in paths.items()}, None
    except Exception as e:  # report, do not fail the training run
        log(f"pdinfer unavailable: {type(e).__name__}: {e}")
        return None, f"{type(e).__name__}: {e}"


def to_png_input(x):
    """The float32 image a shipped 8-bit PNG decodes to: round(x*255) / 255 (pdinfer.read_image)."""
    png = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    return png, png.astype(np.float32) / np.float32(255)


def pick_samples(predictors, log):
    """First N_SAMPLES per class of the SAMPLE_SEED stream that every predictor gets right.

    predictors: {name: f(x (N,1,60,120) float32) -> probabilities}.  Returns
    [(class, n, png uint8 (60,120), x float32 (1,60,120))] and {class: rejected indices}."""
    chosen, rejected = [], {}
    for c, cname in enumerate(CLASSES):
        got, rej = 0, []
        for i in range(MAX_SAMPLE_TRIES):
            png, x = to_png_input(synthetic.generate_one(c, i, SAMPLE_SEED))
            if all(int(f(x[None]).argmax()) == c for f in predictors.values()):
                got += 1
                chosen.append((cname, got, png[0], x))
                if got == N_SAMPLES:
                    break
            else:
                rej.append(i)
        if got < N_SAMPLES:
            raise RuntimeError(f"only {got} of {MAX_SAMPLE_TRIES} {cname} samples classified right")
        rejected[cname] = rej
    log(f"samples: rejected stream indices {rejected}")
    return chosen, rejected


def write_samples(out_dir: Path, chosen):
    from PIL import Image
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in out_dir.iterdir():
        if p.suffix in (".png", ".npy") and p.stem.rsplit("_", 1)[0] in CLASSES:
            p.unlink()
    for cname, n, png, x in chosen:
        Image.fromarray(png, mode="L").save(out_dir / f"{cname}_{n}.png")
        np.save(out_dir / f"{cname}_{n}.npy", x)
        with Image.open(out_dir / f"{cname}_{n}.png") as im:  # the PNG decodes to the .npy
            back = np.asarray(im, dtype=np.float32) / np.float32(255)
        assert np.array_equal(back[None], x)


def _cm_table(cm):
    head = "| true \\ predicted | " + " | ".join(CLASSES) + " |"
    rule = "| --- |" + " --- |" * len(CLASSES)
    rows = [f"| {CLASSES[i]} | " + " | ".join(str(v) for v in cm[i]) + " |" for i in range(len(CLASSES))]
    return "\n".join([head, rule, *rows])


def write_readme(path: Path, r):
    cls_list = ", ".join(CLASSES)
    lines = [
        "# Shipped weights",
        "",
        "Two diagnosis models for the six GIS defect classes of the synthetic PRPD generator",
        f"(`exporter/synthetic.py`, docs/SYNTHETIC.md), in this output order: {cls_list}.",
        "They are trained on synthetic data only: they show that pdinfer runs real trained",
        "models end to end; they are not validated on measured PD data.",
        "",
        "Reproduce (CPU, about " f"{r['total_minutes']:.0f} min, one torch thread):",
        "",
        "    " + REPRODUCE,
        "",
        "| file | model | size (bytes) | output |",
        "| --- | --- | --- | --- |",
    ]
    for name in RECIPES:
        m = r["models"][name]
        lines.append(f"| `{name}.pdw` | {RECIPES[name][0]} | {m['size']} | "
                     f"{'softmax probabilities' if RECIPES[name][3] == 'ce' else 'per-class sigmoid scores'} |")
    lines += [
        "",
        "## Data and seeds",
        "",
        f"- training set: `exporter.synthetic.generate({N_TRAIN}, seed={TRAIN_SEED})` "
        f"({N_TRAIN * len(CLASSES)} images, the same set for both models)",
        f"- held-out set: `generate({N_HELDOUT}, seed={HELDOUT_SEED})` "
        f"({N_HELDOUT * len(CLASSES)} images, never trained on)",
        "- the recipes below were chosen on other seeds (training seed 1 with validation seeds 2",
        "  and 44); the held-out set was evaluated once with an earlier PDModel recipe (14 epochs,",
        "  max lr 0.001, no augmentation: 92.3 %) before PDModel's recipe was retuned on seed 44",
        f"- samples: `generate_one(class, i, seed={SAMPLE_SEED})`, i = 0, 1, ...",
        f"- torch seed {TORCH_SEED} (initial weights, shuffling, augmentation), "
        f"`torch.set_num_threads(1)`, torch {r['torch_version']}",
        "",
        "## Training",
        "",
        "| model | epochs | Adam, one-cycle max lr | loss | augmentation | training time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, (cls_name, epochs, lr, loss, roll) in RECIPES.items():
        loss_txt = ("cross-entropy on pre-softmax logits" if loss == "ce"
                    else "BCE on pre-sigmoid logits vs one-hot")
        aug = f"random phase roll ±{roll} columns (±{roll * 3}°)" if roll else "none"
        lines.append(f"| {cls_name} | {epochs} | {lr:g} | {loss_txt} | {aug} | "
                     f"{r['models'][name]['train_seconds']:.0f} s |")
    lines += [
        "",
        f"Batch {BATCH}. Why these losses: see the docstring of `exporter/train.py`. The phase",
        "roll (circular shift along the phase axis) mimics the synchronisation offset between",
        "sensor and test voltage; with it PDModel went from 94.5 % to 98.3 % on validation seed 44",
        "(same epochs and learning rate).",
        "Training times depend on the machine's load (2 shared cores here).",
        "",
        "## Held-out accuracy",
        "",
        "| classifier | accuracy (torch) | accuracy (pdinfer) | top-1 agreement torch vs pdinfer | max abs output difference |",
        "| --- | --- | --- | --- | --- |",
        f"| nearest class-mean image (baseline) | {r['baseline'] * 100:.1f} % | – | – | – |",
    ]
    for name in RECIPES:
        m = r["models"][name]
        if m.get("pdinfer_acc") is None:
            pd_cols = "not run | – | –"
        else:
            pd_cols = (f"{m['pdinfer_acc'] * 100:.1f} % | {m['agreement'] * 100:.2f} % | "
                       f"{m['max_abs_diff']:.2e}")
        lines.append(f"| {RECIPES[name][0]} (`{name}.pdw`) | {m['torch_acc'] * 100:.1f} % | {pd_cols} |")
    if r.get("pdinfer_error"):
        lines += ["", f"pdinfer was not run: {r['pdinfer_error']}"]
    for name in RECIPES:
        lines += ["", f"Confusion matrix, {RECIPES[name][0]} under torch (rows: true class):", "",
                  _cm_table(r["models"][name]["cm"])]
    lines += ["", "Confusion matrix, nearest class-mean baseline:", "", _cm_table(r["baseline_cm"])]
    lines += [
        "",
        "## Samples (`samples/`)",
        "",
        f"`samples/<class>_<n>.png` and `samples/<class>_<n>.npy`, n = 1..{N_SAMPLES}. The PNG is",
        "8-bit grayscale, 60 rows x 120 columns, value = round(x * 255); the `.npy` is float32",
        "(1, 60, 120) and holds exactly what the PNG decodes to: **x = png / 255** (what",
        "`pdinfer.read_image` does), so both files give the same result. Convention: columns =",
        "phase 0..360° (3° per column, 0° = positive-going zero crossing), rows = amplitude, row 0",
        "(top) = highest amplitude.",
        "",
        "    python -m pdinfer run weights/pd_light.pdw weights/samples/void_1.png",
        "",
        f"They are the first {N_SAMPLES} images per class of the seeded stream that both models",
        "(torch" + (" and pdinfer" if r.get("pdinfer_used_for_samples") else "") +
        ") classify as their name says; stream indices skipped because a model got them wrong:",
        "",
    ]
    for cname, rej in r["rejected"].items():
        lines.append(f"- {cname}: {', '.join(map(str, rej)) if rej else 'none'}")
    lines.append("")
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporter.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="weights", help="output folder (default: weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    from .convert import export

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    x_tr, y_tr = synthetic.generate(N_TRAIN, TRAIN_SEED)
    x_te, y_te = synthetic.generate(N_HELDOUT, HELDOUT_SEED)
    baseline, base_pred = nearest_mean_baseline(x_tr, y_tr, x_te, y_te)
    log(f"nearest class-mean baseline: {baseline * 100:.1f} %")

    report = {"baseline": baseline, "baseline_cm": confusion(y_te, base_pred), "models": {},
              "torch_version": torch.__version__}
    trained, paths = {}, {}
    for name in RECIPES:
        model, secs = train_one(name, x_tr, y_tr, log)
        probs = torch_predict(model, x_te)
        pred = probs.argmax(1)
        acc = float((pred == y_te).mean())
        log(f"{name}: held-out accuracy (torch) {acc * 100:.1f} %, trained in {secs:.0f} s")
        path = out / f"{name}.pdw"
        export(model, path, input_shape=(1, synthetic.H, synthetic.W), classes=list(CLASSES), force=True)
        trained[name], paths[name] = model, path
        report["models"][name] = {"torch_acc": acc, "train_seconds": secs, "cm": confusion(y_te, pred),
                                  "size": os.path.getsize(path), "torch_probs": probs}

    pd_models, err = _try_pdinfer(paths, log)
    report["pdinfer_error"] = err
    predictors = {f"torch:{n}": (lambda x, m=m: torch_predict(m, x)) for n, m in trained.items()}
    if pd_models is not None:
        try:
            for name, pm in pd_models.items():
                probs = np.asarray(pm(x_te))
                tp = report["models"][name]["torch_probs"]
                pred = probs.argmax(1)
                m = report["models"][name]
                m["pdinfer_acc"] = float((pred == y_te).mean())
                m["agreement"] = float((pred == tp.argmax(1)).mean())
                m["max_abs_diff"] = float(np.abs(probs - tp).max())
                log(f"{name}: held-out accuracy (pdinfer) {m['pdinfer_acc'] * 100:.1f} %, "
                    f"top-1 agreement {m['agreement'] * 100:.2f} %, max |diff| {m['max_abs_diff']:.2e}")
            predictors.update({f"pdinfer:{n}": (lambda x, m=m: np.asarray(m(x))) for n, m in pd_models.items()})
            report["pdinfer_used_for_samples"] = True
        except Exception as e:
            report["pdinfer_error"] = f"{type(e).__name__}: {e}"
            log(f"pdinfer failed: {report['pdinfer_error']}")
            for m in report["models"].values():
                m.pop("pdinfer_acc", None)

    chosen, report["rejected"] = pick_samples(predictors, log)
    write_samples(out / "samples", chosen)
    report["total_minutes"] = max(1.0, (time.perf_counter() - t_start) / 60)
    write_readme(out / "README.md", report)
    log(f"done in {time.perf_counter() - t_start:.0f} s; wrote {out}/README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
