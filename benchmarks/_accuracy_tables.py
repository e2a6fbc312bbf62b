"""The goals table of ``bench_accuracy.py``: each goal of issue 11 read from ``csvdnet evaluate``'s
``summary.json`` (:func:`goal_rows`), the A/B comparison with another run's ``results.json``
(:func:`compare`), and the markdown of ``results.md`` (:func:`report`).

Imported by ``bench_accuracy.py`` (benchmarks/ on ``sys.path``); no csvdnet import.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping


# ----------------------------------------------------------------------------------------------
# The goals of issue 11, read from csvdnet evaluate's summary.json.

@dataclasses.dataclass(frozen=True)
class Goal:
    """One row of the goals table.

    Attributes:
        key: Stable identifier (results.json, --compare).
        marker: The marker / score.
        metric: What is measured.
        goal: The goal's bound.
        higher_is_better: ``value >= goal`` is met if true, ``value <= goal`` otherwise.
        read: summary.json -> (value, (ci_low, ci_high) or None, basis dict, basis text), or
            None when the summary has no such figure.
    """

    key: str
    marker: str
    metric: str
    goal: float | None
    higher_is_better: bool
    read: Callable[[Mapping[str, Any]], tuple[float, tuple[float, float] | None,
                                               dict[str, Any], str] | None]


def _get(tree: Mapping[str, Any], *path: str) -> Any:
    for name in path:
        if not isinstance(tree, Mapping) or name not in tree:
            return None
        tree = tree[name]
    return tree


def _ci(low: Any, high: Any) -> tuple[float, float] | None:
    return None if low is None or high is None else (float(low), float(high))


def _pooled_dice(task: str):
    def read(summary):
        entry = _get(summary, "segmentation", task)
        if entry is None or _get(entry, "pooled_dice", "value") is None:
            return None
        dice, lesions = entry["pooled_dice"], entry.get("pooled_lesions", {})
        basis = {"subjects": entry["n_subjects"], "true_lesions": lesions.get("true")}
        text = f"{entry['n_subjects']} subjects, {lesions.get('true')} true lesions"
        return dice["value"], _ci(dice.get("ci_low"), dice.get("ci_high")), basis, text
    return read


def _lesion_f1(task: str):
    """Pooled lesion F1 of csvdnet evaluate (26-connected components, found by any overlap)."""
    def read(summary):
        entry = _get(summary, "segmentation", task)
        lesions = _get(entry, "pooled_lesions") if entry else None
        if lesions is None or _get(lesions, "f1", "value") is None:
            return None
        true, found = lesions["true"], lesions["detected"]
        predicted, hits = lesions["predicted"], lesions["hits"]
        basis = {"subjects": entry["n_subjects"], "true_lesions": true,
                 "true_found": found, "missed": true - found, "predicted_lesions": predicted,
                 "predicted_on_a_true_lesion": hits, "predicted_on_none": predicted - hits}
        text = (f"{entry['n_subjects']} subjects; {true} true lesions, {found} found "
                f"({true - found} missed); {predicted} predicted, {predicted - hits} on no "
                "true lesion")
        f1 = lesions["f1"]
        return f1["value"], _ci(f1.get("ci_low"), f1.get("ci_high")), basis, text
    return read


def _detection_f1(task: str):
    def read(summary):
        entry = _get(summary, "detection", task)
        pooled = _get(entry, "pooled") if entry else None
        if pooled is None or _get(pooled, "f1", "value") is None:
            return None
        tp, fp, fn = pooled["tp"], pooled["fp"], pooled["fn"]
        basis = {"subjects": entry["n_subjects"], "true_points": tp + fn, "tp": tp, "fp": fp,
                 "fn": fn, "radius_mm": entry.get("radius_mm")}
        radius = entry.get("radius_mm")
        match = (f"within {radius:g} mm" if task != "epvs" or radius is None
                 else f"within {radius:g} mm of the EPVS (tube) when its extent is labelled")
        text = (f"{entry['n_subjects']} subjects, {tp + fn} true; TP {tp}, FP {fp}, FN {fn} "
                f"({match})")
        f1 = pooled["f1"]
        return f1["value"], _ci(f1.get("ci_low"), f1.get("ci_high")), basis, text
    return read


def _false_positives(task: str):
    def read(summary):
        entry = _get(summary, "detection", task)
        per = _get(entry, "false_positives_per_subject") if entry else None
        if per is None or per.get("mean") is None:
            return None
        fp = _get(entry, "pooled", "fp")
        basis = {"subjects": per["n"], "fp": fp, "max_per_subject": per.get("max")}
        text = f"{fp} FP over {per['n']} subjects"
        if per.get("max") is not None:
            text += f" (most in one subject: {per['max']:g})"
        return per["mean"], _ci(per.get("mean_ci_low"), per.get("mean_ci_high")), basis, text
    return read


def _score(kind: str, statistic: str):
    def read(summary):
        entry = _get(summary, "total_score", kind)
        if entry is None or entry.get(statistic) is None:
            return None
        n = entry["n"]
        exact = round(entry["accuracy"] * n)
        basis = {"subjects": n, "exact": exact, "within_one": entry.get("within_one"),
                 "confusion": entry.get("confusion")}
        text = f"{n} subjects, {exact} exact"
        if entry.get("within_one") is not None:
            text += f", {round(entry['within_one'] * n)} within one"
        ci = entry.get(f"{statistic}_ci")
        return entry[statistic], _ci(*ci) if ci else None, basis, text
    return read


GOALS: tuple[Goal, ...] = (
    Goal("wmh_dice", "WMH", "Dice (voxels, pooled)", 0.85, True, _pooled_dice("wmh")),
    Goal("lacune_lesion_f1", "lacunes", "lesion F1 (26-connected, pooled)", 0.80, True,
         _lesion_f1("lacune")),
    Goal("rssi_lesion_f1", "RSSI", "lesion F1 (26-connected, pooled)", 0.80, True,
         _lesion_f1("rssi")),
    Goal("cmb_f1", "CMB", "detection F1 (4 mm, pooled)", 0.85, True, _detection_f1("cmb")),
    Goal("cmb_fp_per_subject", "CMB", "false positives per subject (mean)", 1.0, False,
         _false_positives("cmb")),
    Goal("epvs_f1", "EPVS", "detection F1 (pooled)", 0.85, True, _detection_f1("epvs")),
    Goal("rule_total_exact", "total SVD score, rules (Staals)", "exact accuracy", 0.80, True,
         _score("rule", "accuracy")),
    Goal("rule_total_kappa", "total SVD score, rules (Staals)", "quadratic-weighted kappa", 0.90,
         True, _score("rule", "kappa_quadratic")),
    Goal("ordinal_total_exact", "total SVD score, ordinal head", "exact accuracy", 0.80, True,
         _score("ordinal", "accuracy")),
    Goal("ordinal_total_kappa", "total SVD score, ordinal head", "quadratic-weighted kappa", 0.90,
         True, _score("ordinal", "kappa_quadratic")),
)
"""The goals table of issue 11, in its order."""

AGREEMENT: tuple[Goal, ...] = (
    Goal("rule_vs_ordinal_exact", "rule total vs ordinal total", "exact agreement", None, True,
         _score("rule_vs_ordinal", "accuracy")),
    Goal("rule_vs_ordinal_kappa", "rule total vs ordinal total", "quadratic-weighted kappa",
         None, True, _score("rule_vs_ordinal", "kappa_quadratic")),
)
"""How well the two totals agree with each other (no goal)."""


def goal_rows(summary: Mapping[str, Any], goals: tuple[Goal, ...] = GOALS) -> list[dict[str, Any]]:
    """The table's rows from a ``csvdnet evaluate`` summary; absent figures get value None."""
    rows = []
    for goal in goals:
        found = goal.read(summary)
        row: dict[str, Any] = {"key": goal.key, "marker": goal.marker, "metric": goal.metric,
                               "goal": goal.goal,
                               "goal_text": None if goal.goal is None else
                               f"{'>=' if goal.higher_is_better else '<='} {goal.goal:g}"}
        if found is None:
            row.update(value=None, ci=None, met=None, basis={},
                       basis_text="not in the evaluation (no label or prediction for it)")
        else:
            value, ci, basis, text = found
            met = None if goal.goal is None else (
                value >= goal.goal if goal.higher_is_better else value <= goal.goal)
            if basis.get("true_lesions", basis.get("true_points")) == 0:
                # Nothing to find: evaluate's figure is a convention (F1 1.0 when nothing is
                # predicted either), not a measurement of the goal.
                met = None
                text += "; nothing to find in this cohort, so not a measurement"
            row.update(value=float(value), ci=list(ci) if ci else None, met=met, basis=basis,
                       basis_text=text)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# Comparison and reporting.

def _inside(value: float | None, ci: list[float] | None) -> bool | None:
    if value is None or not ci:
        return None
    return ci[0] <= value <= ci[1]


def compare(rows: list[dict[str, Any]], other: Mapping[str, Any]) -> dict[str, Any]:
    """Per row: B's value and interval, A - B, and whether it is within the intervals."""
    other_rows = {r["key"]: r for r in other.get("rows", []) + other.get("agreement", [])}
    out = {}
    for row in rows:
        b = other_rows.get(row["key"])
        if b is None:
            continue
        a_value, b_value = row.get("value"), b.get("value")
        diff = None if a_value is None or b_value is None else a_value - b_value
        in_a, in_b = _inside(b_value, row.get("ci")), _inside(a_value, b.get("ci"))
        if diff is None:
            verdict = "-"
        elif in_a is None and in_b is None:
            verdict = "no interval"
        elif in_a or in_b:
            verdict = "within the interval"
        else:
            verdict = "outside both intervals"
        out[row["key"]] = {"value": b_value, "ci": b.get("ci"), "met": b.get("met"),
                           "difference": diff, "verdict": verdict}
    return out


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci_text(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _met_text(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "no")


def _confusion(title: str, matrix: list[list[int]] | None) -> list[str]:
    if not matrix:
        return []
    k = len(matrix)
    lines = ["", f"{title} (rows true, columns predicted):", "",
             "| true \\ predicted | " + " | ".join(str(i) for i in range(k)) + " |",
             "|---|" + "---:|" * k]
    lines += [f"| {i} | " + " | ".join(str(n) for n in matrix[i]) + " |" for i in range(k)]
    return lines


def report(record: Mapping[str, Any]) -> str:
    """The markdown of ``results.md``."""
    machine, cohort, pred = record["machine"], record["cohort"], record["prediction"]
    flags = machine["cpu_flags"]
    flag_text = ", ".join(f"{name} {'yes' if flags.get(name) else 'no'}"
                          for name in ("avx2", "avx512f", "avx512_bf16", "amx"))
    if flags.get("amx_flags"):
        flag_text += f" ({' '.join(flags['amx_flags'])})"
    load = lambda x: "-" if not x else " / ".join(f"{v:.2f}" for v in x)  # noqa: E731
    title = "Held-out accuracy against the goals of issue 11"
    if record.get("label"):
        title += f": {record['label']}"
    seed = cohort.get("synthesis") or {}
    lines = [f"### {title}", "",
             f"- date: {record['date']}; csvdnet {record['csvdnet_version']}"
             + (f", commit {record['git_commit']}" if record.get("git_commit") else ""),
             f"- machine: {machine['description']}; CPU flags: {flag_text}; load average "
             f"(1 / 5 / 15 min) at start {load(machine['load_average_start'])}, at end "
             f"{load(machine['load_average_end'])}",
             *(["- packages: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()
                                             if v)] if machine.get("packages") else []),
             f"- model: `{record['model']}`",
             f"- cohort: `{cohort['path']}`: {cohort['subjects']} subjects, "
             f"{cohort['evaluated']} evaluated"
             + (f"; synthetic, seed {seed['seed']} (profile {seed.get('profile')}, from "
                f"{seed['first_subject']}/synth.json)" if seed.get("seed") is not None
                else "; no synth.json (seed unknown / not synthetic)")]
    if pred["made_here"]:
        lines.append(
            f"- predictions: made by this run through `csvdnet predict`'s code path into "
            f"`{pred['folder']}` ({pred['weights']} weights, {pred['jobs']} job(s), TTA "
            f"{'on' if pred['tta'] else 'off'}, TensorFlow {pred.get('tensorflow')}): "
            f"{pred['predicted']} of {pred['subjects_total']} predicted; "
            f"{_num(pred['seconds_per_subject_median'], 1)} s per subject (median; "
            f"{pred['seconds_source']}), {_num(pred['seconds_per_subject_wall'], 1)} s per "
            f"subject by wall time, model load {pred['model_load_seconds']:.1f} s")
        model = pred["model"]
        lines.append(f"- model record: {model.get('kind')} `{model.get('id')}`, sha256 "
                     f"{str(model.get('sha256'))[:12]}, spacing {model.get('spacing')}, "
                     f"thresholds {model.get('thresholds')}")
        for subject, message in pred["failed"].items():
            lines.append(f"- **prediction failed** for {subject}: {message}")
    else:
        lines.append(
            f"- predictions: existing, not re-predicted: `{pred['folder']}`; "
            f"{_num(pred['seconds_per_subject_median'], 1)} s per subject (median, "
            f"{pred['seconds_source']})")
        for model in pred.get("model_from_reports", []):
            lines.append(f"- model named by their reports: {model.get('kind')} "
                         f"`{model.get('id')}` at `{model.get('path')}`, sha256 "
                         f"{str(model.get('sha256'))[:12]}, thresholds "
                         f"{model.get('thresholds')}")
        if pred.get("model_note"):
            lines.append(f"- **note**: {pred['model_note']}")
    missing = record["evaluation"].get("missing_prediction") or []
    if missing:
        lines.append(f"- **no prediction** (left out of every figure): {', '.join(missing)}")
    lines.append(f"- evaluation: `csvdnet evaluate`'s code (native space; 95 % percentile "
                 f"bootstrap over subjects) in `{record['evaluation']['folder']}`")
    lines.append("")

    comparison = record.get("comparison")
    header = ["marker", "metric", "value", "95 % CI", "goal", "met"]
    if comparison:
        b = comparison["label"] or comparison["path"]
        lines += ["A/B comparison: A = this run"
                  + (f" ({record['label']})" if record.get("label") else "")
                  + f", B = {b} (`{comparison['path']}`; model `{comparison.get('model')}`, "
                  f"cohort `{comparison.get('cohort')}`, seed {comparison.get('seed')}). "
                  "\"within the interval\": one run's value lies inside the other's 95 % "
                  "interval, so this cohort does not establish the difference.", ""]
        if comparison.get("warning"):
            lines += [f"**{comparison['warning']}**", ""]
        header = ["marker", "metric", "A", "A 95 % CI", "B", "B 95 % CI", "A - B",
                  "difference", "goal", "A met", "B met"]
    header.append("basis (A)" if comparison else "basis")
    lines += ["| " + " | ".join(header) + " |",
              "|" + "|".join("---" if h in ("marker", "metric", "basis", "basis (A)",
                                            "difference") else "---:" for h in header) + "|"]
    for row in record["rows"] + record["agreement"]:
        cells = [row["marker"], row["metric"], _num(row["value"]), _ci_text(row["ci"])]
        if comparison:
            other = comparison["rows"].get(row["key"], {})
            cells += [_num(other.get("value")), _ci_text(other.get("ci")),
                      "-" if other.get("difference") is None
                      else f"{other['difference']:+.3f}", other.get("verdict", "-")]
        cells += [row["goal_text"] or "(no goal)", _met_text(row["met"])]
        if comparison:
            cells.append(_met_text(comparison["rows"].get(row["key"], {}).get("met")))
        cells.append(row["basis_text"])
        lines.append("| " + " | ".join(cells) + " |")
    met = [r["met"] for r in record["rows"] if r["met"] is not None]
    lines += ["", f"Goals met: {sum(met)} of {len(met)} measured"
              + (f" ({len(record['rows']) - len(met)} not measured)"
                 if len(met) < len(record["rows"]) else "") + "."]
    for row in record["rows"]:
        if row["key"] in ("rule_total_exact", "ordinal_total_exact"):
            lines += _confusion(f"Total SVD score, {row['marker'].split(', ')[1]}",
                                row["basis"].get("confusion"))
    return "\n".join(lines) + "\n"
