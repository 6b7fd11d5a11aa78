"""The runs table on the Train tab: every run of the session, their curves over each other, and
the table and histories as files (CSV and JSON)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from types import SimpleNamespace

import gradio as gr

import core

from . import files
from .inputs import user_errors
from .session import RUN_COLUMNS, Session


def runs_panel(session: Session):
    """The table's rows, newest first, and the runs one can pick to compare."""
    rows = [run.row() for run in reversed(session.runs)]
    names = [run.name for run in reversed(session.runs)]
    return rows, gr.update(choices=names, value=[name for name in names[:2]])


@user_errors
def compare_runs(selected, session: Session):
    """The picked runs' curves over each other."""
    if selected is not None and not isinstance(selected, list):
        raise ValueError('pick runs as a list of names, like ["run 1", "run 2"]')
    picked = set(selected or [])
    unknown = picked - {run.name for run in session.runs}
    if unknown:
        raise ValueError(f"there is no {sorted(unknown)[0]} in this session's runs table")
    return core.figures.runs_figure({run.name: run.history for run in session.runs if run.name in picked})


@user_errors
def download_runs(session: Session, request: gr.Request = None):
    """runs.csv (the table) and runs.json (the table with every run's history), to keep or plot elsewhere."""
    if not session.runs:
        raise ValueError("there are no runs yet: train once and the runs table fills in")
    folder = files.fresh_folder(request, "runs")
    with open(folder / "runs.csv", "w", newline="", encoding="utf-8") as table:
        writer = csv.writer(table)
        writer.writerow(RUN_COLUMNS)
        writer.writerows(run.row() for run in session.runs)
    histories = [dict(zip(RUN_COLUMNS, run.row()), history={
        "step_positions": run.history.step_positions, "step_losses": run.history.step_losses,
        "epochs": [asdict(record) for record in run.history.epochs]}) for run in session.runs]
    (folder / "runs.json").write_text(json.dumps(histories, indent=1))
    return [str(folder / "runs.csv"), str(folder / "runs.json")]


def widgets() -> SimpleNamespace:
    with gr.Accordion("Runs of this session: compare and download", open=True, elem_id="runs"):
        table = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, type="array", elem_id="runs-table")
        picked = gr.CheckboxGroup([], label="runs to compare", elem_id="runs-picked")
        plot = gr.Plot(elem_id="runs-plot")
        with gr.Row():
            download_btn = gr.Button("Download the runs (CSV + JSON)", size="sm", elem_id="runs-download-btn")
            files = gr.File(file_count="multiple", interactive=False, label="runs.csv, runs.json",
                            elem_id="runs-files")
    return SimpleNamespace(table=table, picked=picked, plot=plot, download_btn=download_btn, files=files)


def wire(training: list, panel: SimpleNamespace, session: gr.State) -> None:
    for event in training:
        event.then(runs_panel, [session], [panel.table, panel.picked], api_visibility="private")
    panel.picked.change(compare_runs, [panel.picked, session], [panel.plot], api_name="compare_runs",
                        preprocess=False)  # the choices change per session: compare_runs checks the names
    panel.download_btn.click(download_runs, [session], [panel.files], api_name="download_runs")
