r"""What the notebooks in notebooks/ share: where the dataset is, charts that survive an HTML export, money.

- `dataset_path()`: `$AGENTMETER_DATA` as the README says to set it, `AGENTMETER_DATA=demo-data jupyter lab
  notebooks/`: Jupyter starts the kernel in the notebook's folder, so a relative path is looked up from
  there and then from each folder above it (the one the user typed it in); an absolute path is used as is.
  Without the variable: `./agentmeter-data` found the same way, else None (the notebook then says so, or
  makes a synthetic example).
- `offline_charts()`: plotly figures are saved both as plotly's own JSON (JupyterLab draws it) and as HTML
  with plotly.js inline once per notebook, so `jupyter nbconvert --to html` keeps every chart and the page
  needs no network.
- `usd()`: money for people. (In a Markdown cell a dollar sign is written `\$`: "$0.10 ... $0.01" would
  render as a formula; a test holds the notebooks to it.)
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from analyzer.dataset import DEFAULT_DATA_DIR, AnalyzerError
from analyzer.output import money

NOTEBOOK_RENDERERS = "plotly_mimetype+notebook"


def dataset_path(start: Path | None = None) -> Path | None:
    """The dataset directory the notebook should open (see the module docstring), or None."""
    here = (start or Path.cwd()).resolve()
    given = os.environ.get("AGENTMETER_DATA")
    wanted = Path(given or DEFAULT_DATA_DIR)
    if wanted.is_absolute():
        return wanted
    for folder in (here, *here.parents):
        if (folder / wanted).is_dir():
            return folder / wanted
    if given:
        raise AnalyzerError(f"AGENTMETER_DATA={given}: no such directory in {here} or any folder above it")
    return None


def offline_charts() -> None:
    import plotly.io as pio

    pio.renderers.default = NOTEBOOK_RENDERERS


def usd(value: float | Decimal | None) -> str:
    return "-" if value is None else money(value)
