"""The scrutiny report: student vs teacher vs experts on the expert-checked test split.

- ``metrics``: accuracy, macro-F1, per-class scores, confusion, calibration (ECE, Brier, NLL), agreement, the
  95 % interval of an accuracy and the test comparing two proportions
- ``gather``: what the report reads from the database
- ``timing``: speed, latency, size and cost of the student (measured) and the teacher (recorded)
- ``curve``: the learning curve, chosen routing vs simulated random routing
- ``records``: the base of every section (a record whose JSON is its fields) and ``json_safe``
- ``sections``: the report as typed data (``Report`` and its sections), with report.json as ``to_json()``
- ``slices``: accuracy by slice of the test items (metadata columns, text length), and where a model is worse
- ``anchoring``: expert accuracy and agreement with the teacher on verify vs blind tasks
- ``findings``: the first screen, the headline and key findings in plain words
- ``render``: the terminal table, the self-contained HTML page, the plots
- ``report``: ``evaluate``, which ties them together and writes report.json and report.html
"""

from terakoya.evaluation.metrics import agreement, classification_metrics, cohen_kappa
from terakoya.evaluation.render import render_html, render_terminal
from terakoya.evaluation.report import EvaluationReport, evaluate
from terakoya.evaluation.sections import Report

__all__ = [
    "EvaluationReport",
    "Report",
    "agreement",
    "classification_metrics",
    "cohen_kappa",
    "evaluate",
    "render_html",
    "render_terminal",
]
