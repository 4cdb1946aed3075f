"""Markdown tables of the evaluation JSONs in this folder (for MODEL_CARD.md).

Usage: .venv/bin/python models/eval/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
COLUMNS = (("model", "model"), ("baseline", "mean pose"), ("classical", "classical"))


def cell(value: object, digits: int) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def split_table(names: list[str]) -> str:
    head = ("| eval | column | hip median m | hip p90 m | root-rel. MPJPE mm | MPJPE mm "
            "| PA-MPJPE mm | count acc. | 1 person -> 1 | fall P | fall R |")
    lines = [head, "|" + "---|" * 11]
    for name in names:
        doc = json.loads((HERE / f"{name}.json").read_text())
        for key, label in COLUMNS:
            c = doc[key]
            root = c.get("root_error_m") or {}
            lines.append(
                f"| {name if key == 'model' else ''} | {label} | {cell(root.get('median'), 2)} "
                f"| {cell(root.get('p90'), 2)} | {cell(c.get('root_relative_mpjpe_mm'), 0)} "
                f"| {cell(c.get('mpjpe_mm'), 0)} | {cell(c.get('pa_mpjpe_mm'), 0)} "
                f"| {cell(c.get('count_accuracy'), 3)} "
                f"| {cell(c.get('one_person_exactly_one'), 2)} "
                f"| {cell(c.get('fall_precision'), 2)} | {cell(c.get('fall_recall'), 2)} |"
            )
    return "\n".join(lines)


def groups_table(name: str, group: str) -> str:
    doc = json.loads((HERE / f"{name}.json").read_text())
    keys = sorted({k for key, _ in COLUMNS for k in doc[key].get(group, {})})
    lines = [f"| {group} | column | hip median m | hip p90 m | root-rel. MPJPE mm | persons |",
             "|---|---|---|---|---|---|"]
    for k in keys:
        for key, label in COLUMNS:
            g = doc[key].get(group, {}).get(k, {})
            root = g.get("root_error_m") or {}
            lines.append(
                f"| {k if key == 'model' else ''} | {label} | {cell(root.get('median'), 2)} "
                f"| {cell(root.get('p90'), 2)} | {cell(g.get('root_relative_mpjpe_mm'), 0)} "
                f"| {g.get('persons', 'n/a')} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(split_table(["same-layout", "cross-layout", "cross-hardware"]))
    print()
    print(groups_table("cross-layout", "by_routers"))
    print()
    print(groups_table("cross-layout", "by_motion"))
    print()
    print(split_table([f"cross-layout-intel-{r}" for r in (1, 2, 3)]
                      + ["cross-layout-esp32-2", "cross-layout-1person"]))
    print()
    print(groups_table("cross-layout-intel-2", "by_motion"))
    print()
    print(split_table([f"cross-layout-intel-{r}-calibrated" for r in (1, 2, 3)]
                      + ["cross-layout-intel-2-1person-calibrated"]))
    print()
    print(groups_table("cross-layout-intel-2-1person-calibrated", "by_motion"))
