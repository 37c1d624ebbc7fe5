"""``dgbench train``: train a small model on a built-in digits domain, or rebuild the shipped ones."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import DgbenchError, UnknownNameError
from ._app import app, console

MIN_CROP = 16  # 2 positions at stride 8; below it a training-mode InstanceNorm sees a single value


@app.command("train")
def train_cmd(
    task: str = typer.Option(
        "classification", "--task", "-t",
        help="classification (built-in digits) or segmentation (cityscapes, gta5, digit-scenes, typeset-digit-scenes).",
    ),
    dataset: str = typer.Option(
        "digits", "--dataset", "-d",
        help="classification: digits (handwritten) or typeset-digits (fonts); segmentation: cityscapes, gta5, "
        "digit-scenes or typeset-digit-scenes.",
    ),
    model: str = typer.Option(
        "ibn_a", "--model", "-m",
        help="Registry name or alias. On the built-in digits, ibn_a / ibn_b / ... / resnet50 / baseline "
        "mean the small model of that variant (small_resnet_ibn_a, ...).",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Checkpoint path (.pth); the JSON sidecar goes beside it. "
                             "Default: checkpoints/<model>-<dataset>-seed<seed>.pth"),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Epochs (default: the shipped recipe's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights and of the shuffle."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Batch size (default: the shipped recipe's)."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate, > 0 (default: the shipped recipe's)."),
    threads: int = typer.Option(None, "--threads", min=1, help="Intra-op CPU threads (default 1; part of what makes the bytes reproducible)."),
    reproduce_builtin: bool = typer.Option(
        False, "--reproduce-builtin",
        help="Retrain every shipped checkpoint (6 variants x 2 domains) and say whether each matches its manifest sha256.",
    ),
    write_builtin: bool = typer.Option(
        False, "--write-builtin", hidden=True,
        help="Maintainers: rebuild the shipped checkpoints and manifest into --out (default: the package's assets).",
    ),
    data: Path = typer.Option(
        None, "--data", help="Segmentation: dataset root (default $DGBENCH_CITYSCAPES / $DGBENCH_GTA5)."
    ),
    crop: int = typer.Option(713, "--crop", min=MIN_CROP, help=f"Segmentation: square random-crop size (at least {MIN_CROP}: "
                             "instance norm needs more than one position at the network's output stride of 8)."),
    gta5_fraction: float = typer.Option(0.25, "--gta5-fraction", help="Segmentation: seeded share of GTA5's train split, in (0, 1]."),
    gta5_mismatch: str = typer.Option(
        "error", "--gta5-mismatch", help="Segmentation: label/image size mismatch policy: error, resize-label or skip."
    ),
    device: str = typer.Option("auto", "--device", help="Segmentation: auto, cpu, cuda (under torchrun each rank's own GPU), cuda:N."),
    workers: int = typer.Option(4, "--workers", min=0, help="Segmentation: data-loading workers."),
    sync_bn: Optional[bool] = typer.Option(None, "--sync-bn/--no-sync-bn", help="Segmentation: SyncBatchNorm across ranks (default: on under torchrun with CUDA, so BN sees the whole batch)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Segmentation: continue <out>/checkpoint.pth."),
    stop_after: int = typer.Option(None, "--stop-after", min=1, help="Segmentation: stop at this iteration (resume later)."),
) -> None:
    """Train on the built-in digits, seeded and deterministic on CPU (checkpoint + JSON sidecar).

    Same seed, torch build, thread count and machine give the same checkpoint bytes.
    """
    if lr is not None and not lr > 0:  # torch's SGD would refuse it with a traceback
        raise DgbenchError(f"--lr {lr:g}: the learning rate must be > 0")
    if not 0 < gta5_fraction <= 1:
        raise DgbenchError(f"--gta5-fraction {gta5_fraction:g}: a share of GTA5's train split, in (0, 1]")
    if task == "segmentation":
        _train_segmentation(
            dataset=dataset, model=model, root=data, out=out, epochs=epochs, batch_size=batch_size, lr=lr,
            seed=seed, crop=crop, gta5_fraction=gta5_fraction, gta5_mismatch=gta5_mismatch, device=device,
            workers=workers, sync_bn=sync_bn, resume=resume, stop_after=stop_after,
        )
        return
    if task != "classification":
        raise UnknownNameError("task", task, ["classification", "segmentation"])
    if reproduce_builtin or write_builtin:
        _builtin(out, write=write_builtin)
        return
    _train_classification(dataset=dataset, model=model, out=out, epochs=epochs, batch_size=batch_size, lr=lr,
                          seed=seed, threads=threads)


def _train_classification(*, dataset: str, model: str, out: Path | None, epochs: int | None,
                          batch_size: int | None, lr: float | None, seed: int, threads: int | None) -> None:
    """The shipped recipe on a built-in digits domain; unset numbers keep the recipe's."""
    from ..train.builtin import RECIPE
    from ..train.classification import resolve_model, train_classifier

    name = resolve_model(model, dataset)
    if name != model:
        console.print(f"[dim]{model!r} on {dataset} means {name}[/]")
    path = out or Path("checkpoints") / f"{name}-{dataset}-seed{seed}.pth"
    r = train_classifier(
        name, dataset, out=path, seed=seed,
        epochs=epochs or RECIPE["epochs"], batch_size=batch_size or RECIPE["batch_size"],
        lr=lr if lr is not None else RECIPE["lr"], num_threads=threads or RECIPE["num_threads"],
    )
    console.print(
        f"{name} on {dataset}: test accuracy [bold]{r.metrics['test_acc']:.2f}%[/] "
        f"(train {r.metrics['train_acc']:.2f}%), {r.duration_s:.1f} s\n"
        f"checkpoint {r.checkpoint} (sha256 {r.sha256[:16]}...), sidecar {r.sidecar}",
        highlight=False,
    )


def _train_segmentation(*, dataset: str, model: str, root: Path | None, out: Path | None, epochs: int | None,
                        batch_size: int | None, lr: float | None, seed: int, crop: int, gta5_fraction: float,
                        gta5_mismatch: str, device: str, workers: int, sync_bn: bool | None, resume: bool,
                        stop_after: int | None) -> None:
    """The paper's segmentation recipe (Section 4.2); unset numbers keep its defaults."""
    from ..train.segmentation import train_segmentation

    recipe = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("base_lr", lr)) if v is not None}
    r = train_segmentation(
        dataset, model, root=root, out_dir=out or Path("runs") / f"{model}-{dataset}-seed{seed}", seed=seed,
        crop_size=(crop, crop), gta5_fraction=gta5_fraction, gta5_mismatch=gta5_mismatch, device=device,
        num_workers=workers, sync_bn=sync_bn, resume=resume, stop_after=stop_after, **recipe,
    )
    done = "finished" if r.weights else f"stopped at iteration {r.iteration} (run again to resume)"
    console.print(
        f"{done}: {r.iteration}/{r.total_iterations} iterations, last loss "
        f"{r.losses[-1] if r.losses else float('nan'):.4f}; checkpoint {r.checkpoint}"
        + (f", weights {r.weights}" if r.weights else ""),
        highlight=False,
    )


def _builtin(out: Path | None, *, write: bool) -> None:
    from ..config import asset_path
    from ..builtin.checkpoints import CHECKPOINT_DIR
    from ..train.builtin import Reproduction, build_builtin, reproduce_builtin

    if write:
        target = out or asset_path(*CHECKPOINT_DIR)
        console.print(f"rebuilding the shipped checkpoints into {target}")
        build_builtin(target, on_done=lambda e: console.print(
            f"  {e['file']}: test {e['test_acc']:.2f}%, {e['duration_s']:.1f} s, sha256 {e['sha256'][:16]}...", highlight=False))
        return

    def report(rep: Reproduction) -> None:
        verdict = "[green]match[/]" if rep.match else "[red]differs[/]"
        console.print(f"  {rep.file}: {verdict} ({rep.duration_s:.1f} s)", highlight=False)

    with tempfile.TemporaryDirectory(prefix="dgbench-reproduce-") as tmp:
        reps = reproduce_builtin(out or Path(tmp), on_done=report)
    table = Table(title="Reproduction of the shipped checkpoints")
    table.add_column("file", overflow="fold")  # the full name, even in a narrow terminal
    for col in ("sha256 shipped", "sha256 now", "match", "test acc shipped", "test acc now", "time (s)"):
        table.add_column(col, justify="right" if "acc" in col or "time" in col else "left")
    for r in reps:
        shipped = f"{r.shipped_test_acc:.2f}" if r.shipped_test_acc is not None else "-"
        table.add_row(
            r.file, (r.expected_sha256 or "not in manifest")[:8], r.sha256[:8],
            "[green]yes[/]" if r.match else "[red]no[/]", shipped, f"{r.test_acc:.2f}", f"{r.duration_s:.1f}",
        )
    console.print(table)
    n_ok = sum(r.match for r in reps)
    console.print(f"{n_ok}/{len(reps)} checkpoints reproduced bit for bit", highlight=False)
    if n_ok != len(reps):
        console.print(
            "[yellow]Bitwise equality needs the same CPU kernels and torch build as the shipped run; the "
            "test accuracies above show how far the retrained models are from the shipped ones.[/]"
        )
        raise typer.Exit(1)
