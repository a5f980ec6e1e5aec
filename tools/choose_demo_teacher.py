"""Measure which local teacher and which four few-shot examples the demo should ship with.

    python tools/choose_demo_teacher.py [FOLDER] [--sets 8]

Builds a scratch copy of the demo project in FOLDER (default: a temporary folder), records every pool item's
label as an imported expert answer, and runs ``teacher check`` and ``teacher examples`` with the test split
left out (``include_test=False``), so that the demo's test split, which measures the teacher in the report,
plays no part in the choice. Candidates for the examples are the demo file's ``[[examples]]`` and the pool
items. Prints both tables' numbers; copy the chosen model and set into src/terakoya/demo/data/terakoya.toml.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--sets", type=int, default=8)
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()

    from terakoya.demo import prepare_demo_project
    from terakoya.project import Project
    from terakoya.teachers.check import check_examples, check_teachers

    folder = args.folder or Path(tempfile.mkdtemp(prefix="terakoya-demo-choice-")) / "demo"
    prepare_demo_project(folder, fresh=True)
    # every pool item answered from its recorded label (answers imported from the file); the test split unanswered
    project = Project.open(folder)
    for split in ("pool", "test"):
        project.import_file(folder / "data" / f"{split}.csv", id_column="id", label_column="label", split=split)
    answered = project.record_answers(
        folder / "data" / "pool.csv", id_column="id", label_column="label", default_person="recorded labels"
    )
    print(f"{folder}: {answered.recorded} pool items answered from their recorded labels")

    checked = check_teachers(project.db, project.project_id, project.settings, limit=args.limit, include_test=False)
    print(f"teacher check on {checked.source}:")
    for v in checked.scores:
        accuracy = "error" if v.accuracy is None else f"{100 * v.accuracy:.1f} %"
        print(f"  {v.name:<45} {accuracy:>8}  macro-F1 {v.macro_f1 or 0:.3f}  {v.seconds_per_item or 0:.3f} s/item")
    print(checked.advice)
    best = checked.best
    if best is None:
        return
    teacher = project.settings.teacher.model_copy(update={"model": best.model, "prompt_style": best.style})
    settings = project.settings.model_copy(update={"teacher": teacher})
    examples = check_examples(
        project.db, project.project_id, settings, sets=args.sets, limit=args.limit, include_test=False
    )
    print(f"{len(examples.sets)} example sets for {best.model} ({best.style}), scored on {examples.items} pool items:")
    for n, entry in enumerate(examples.sets, 1):
        score = entry.score
        accuracy = "error" if score is None or score.accuracy is None else f"{100 * score.accuracy:.1f} %"
        print(f"  set {n}{' (current)' if entry.current else ''}: {accuracy}")
        for text, label in entry.examples:
            print(f"      {label}: {text}")
    print(examples.advice)
    project.close()


if __name__ == "__main__":
    main()
