"""``remotetool demo``: create the demo survey, advance its runs, list its programs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from remotebridge.cli.context import AppContext, pass_app
from remotebridge.config import data_dir


@click.group()
def demo() -> None:
    """The reference pipeline's demo survey and science programs."""


@demo.command("init")
@click.option("--exposures", "-n", type=click.IntRange(1, 500), default=4, show_default=True,
              help="Number of exposures (filters alternate g, r).")
@click.option("--chips", "-m", type=click.IntRange(1, 100), default=4, show_default=True,
              help="Chips per exposure.")
@click.option("--size", type=click.IntRange(32, 4096), default=128, show_default=True,
              help="Chip size in pixels (square).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Survey folder [default: <data dir>/demo-survey].")
@click.option("--label", "-l", default="demo", show_default=True, help="Label of the chipRuns.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@pass_app
def init(app: AppContext, exposures: int, chips: int, size: int, directory: Path | None,
         label: str, seed: int) -> None:
    """Create the demo survey: raw FITS images, detrends, skycells and chipRuns.

    Upgrades the database schema first. Running it again adds only what is missing.
    """
    from remotebridge.db.migrate import upgrade
    from remotebridge.demo.generate import init_survey

    folder = directory if directory is not None else data_dir() / "demo-survey"
    engine = app.raw_engine()
    upgrade(engine)
    summary = init_survey(engine, folder, exposures=exposures, chips=chips, size=size,
                          seed=seed, label=label)
    human = (
        f"demo survey in {summary.directory}\n"
        f"  exposures: {summary.exposures_created} created, "
        f"{summary.exposures_existing} already there ({summary.chips} chips each, "
        f"camera {summary.camera})\n"
        f"  detrends:  {summary.detrends_created} created, "
        f"{summary.detrends_existing} already there\n"
        f"  skycells:  {summary.skycells_created} created, "
        f"{summary.skycells_existing} already there (tess_id {summary.tess_id})\n"
        f"  chipRuns:  {summary.chip_runs_created} created, "
        f"{summary.chip_runs_existing} already there (label {summary.label})\n"
        f"  files:     {summary.files_written} written, {summary.bytes_written:,} bytes "
        f"in {summary.seconds:.2f} s"
    )
    app.emit(summary.to_dict(), human)


@demo.command("advance")
@click.option("--label", "-l", required=True, help="Label whose finished runs advance.")
@pass_app
def advance(app: AppContext, label: str) -> None:
    """Define the next stage's runs (cam, warp, stack) for finished runs of LABEL."""
    from remotebridge.db.engine import write_session
    from remotebridge.demo.advance import advance_label

    with write_session(app.engine) as session:
        summary = advance_label(session, label)
    data = asdict(summary)
    human = (f"label {label}: {len(summary.cam_runs)} camRuns, {len(summary.warp_runs)} "
             f"warpRuns, {len(summary.stack_runs)} stackRuns defined")
    app.emit(data, human)


@demo.command("programs")
@pass_app
def programs(app: AppContext) -> None:
    """Show where the demo science programs are (the files shipped to the site)."""
    from remotebridge.demo.programs import PROGRAMS, program_path

    data = {stage: str(program_path(stage)) for stage in PROGRAMS}
    app.emit(data, "\n".join(f"{stage:6s} {path}" for stage, path in data.items()))
