"""Push 10,000 review tasks and pull 10,000 annotations against a real local Label Studio.

Baseline, in the same run: pushing one task per request, measured on a sample and
extrapolated to the same count. Needs `scripts/labelstudio.sh install` and `template` first.
Prints the figures, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select  # noqa: E402

from catalog import db  # noqa: E402
from catalog.models import Image, ImageSource, ImageStatus, Species  # noqa: E402
from catalog.settings import get_settings  # noqa: E402
from catalog.species import ensure_default_species  # noqa: E402
from labeling.client import make_client  # noqa: E402
from labeling.config import NOT_A_FISH, choice_result  # noqa: E402
from labeling.project import setup_project  # noqa: E402
from labeling.pull import pull_annotations  # noqa: E402
from labeling.push import (  # noqa: E402
    image_url_prefix,
    journal,
    ls_task,
    push_tasks,  # noqa: E402
    record,
    select_candidates,
)
from labeling.server import local_label_studio  # noqa: E402


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU time used so far by the Label Studio process group (its pid leads the session)."""
    leader = int((data_dir / "labelstudio.pid").read_text())
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # session id
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def add_images(session, n: int, tag: str) -> None:
    """``n`` unique image rows (metadata only: pushing never reads the files)."""
    species = session.scalars(select(Species.id).order_by(Species.id)).all()
    images, sources = [], []
    for i in range(n):
        sha = hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()
        images.append({"sha256": sha, "raw_sha256": sha, "status": ImageStatus.UNIQUE,
                       "path": f"{sha[:2]}/{sha[2:4]}/{sha}.jpg", "width": 640, "height": 480,
                       "expected_species_id": species[i % len(species)]})
    session.execute(insert(Image), images)
    ids = dict(session.execute(select(Image.sha256, Image.id)).all())
    for row in images:
        sources.append({"url": f"https://example.test/{row['sha256']}.jpg",
                        "image_id": ids[row["sha256"]], "species_id": row["expected_species_id"],
                        "site": "example.test"})
    session.execute(insert(ImageSource), sources)
    session.commit()


def import_annotated(session, client, project_id: int, n: int, users: list[int]) -> None:
    """Tasks with one annotation each, imported in bulk: the fixture for the pull benchmark."""
    prefix = image_url_prefix()
    candidates = select_candidates(session, None, n, "oldest")
    for start in range(0, len(candidates), 1000):
        batch = candidates[start:start + 1000]
        journal(session, project_id, batch)
        tasks = []
        for i, c in enumerate(batch, start):
            task = ls_task(c, prefix)
            choice = NOT_A_FISH if i % 10 == 0 else c.expected
            task["annotations"] = [{"result": choice_result(choice),
                                    "completed_by": users[i % len(users)]}]
            tasks.append(task)
        result = client.projects.import_tasks(project_id, request=tasks, return_task_ids=True)
        record(session, dict(zip([c.image_id for c in batch], result.task_ids, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=200, help="one-per-request sample")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-review-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        with local_label_studio(root) as ls:
            started = time.perf_counter() - t0
            os.environ.update(SHOAL_DATA_DIR=str(ls.files_root),
                              SHOAL_DATABASE_URL=f"sqlite:///{root / 'catalog.db'}")
            get_settings.cache_clear()
            db.upgrade()
            client = make_client(ls.url, ls.token, timeout=600)
            with db.session_scope() as session:
                ensure_default_species(session)
                setup_project(session, client, files_root=ls.files_root)
                add_images(session, args.tasks, "push")
                cpu, own = server_cpu_seconds(ls.data_dir), time.process_time()
                report = push_tasks(session, client, batch_size=args.batch_size)
                push_cpu = server_cpu_seconds(ls.data_dir) - cpu
                push_own = time.process_time() - own
                push_s = report.seconds
                assert report.pushed == args.tasks, report.as_dict()
                add_images(session, args.sample, "single")
                one = push_tasks(session, client, batch_size=1)
                assert one.pushed == args.sample, one.as_dict()
                single_s = one.seconds / args.sample * args.tasks

                pull_project = setup_project(session, client, files_root=ls.files_root,
                                             title="Shoal pull benchmark").project_id
                users = [1] + [client.users.create(email=f"bench{i}@shoal.test",
                                                   username=f"bench{i}").id for i in (1, 2)]
                add_images(session, args.tasks, "pull")
                t = time.perf_counter()
                import_annotated(session, client, pull_project, args.tasks, users)
                fixture_s = time.perf_counter() - t
                cpu, own = server_cpu_seconds(ls.data_dir), time.process_time()
                pulled = pull_annotations(session, client, project_id=pull_project)
                pull_cpu = server_cpu_seconds(ls.data_dir) - cpu
                pull_own = time.process_time() - own
                assert pulled.annotations == args.tasks, pulled.as_dict()
                again = pull_annotations(session, client, project_id=pull_project)
                assert again.decisions.changed == 0
    figures = {
        "tasks": args.tasks,
        "batch_size": args.batch_size,
        "push_s": round(push_s, 2),
        "push_one_per_request_s_extrapolated": round(single_s, 1),
        "push_speedup": round(single_s / push_s, 1),
        "push_requests": report.requests,
        "push_server_cpu_s": round(push_cpu, 1),
        "push_shoal_cpu_s": round(push_own, 1),
        "pull_s": round(pulled.seconds, 2),
        "pull_annotations": pulled.annotations,
        "pull_decisions": pulled.decisions.changed,
        "pull_server_cpu_s": round(pull_cpu, 1),
        "pull_shoal_cpu_s": round(pull_own, 1),
        "repull_unchanged_s": round(again.seconds, 2),
        "label_studio_start_s": round(started, 1),
        "pull_fixture_import_s": round(fixture_s, 1),
        "goal_push_s": 20, "goal_pull_s": 60,
        "cpus": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 1),
    }
    print(f"push {args.tasks} tasks in {report.requests} requests: {push_s:.1f}s "
          f"(goal <= 20 s); one task per request, {args.sample} sampled and extrapolated: "
          f"{single_s:.0f}s; {figures['push_speedup']}x faster")
    print(f"CPU seconds, Label Studio + Shoal: push {push_cpu:.1f} + {push_own:.1f}, pull "
          f"{pull_cpu:.1f} + {pull_own:.1f} (wall time exceeds their sum only while other work "
          f"shares the machine: load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"pull {pulled.annotations} annotations -> {pulled.decisions.changed} decisions: "
          f"{pulled.seconds:.1f}s (goal <= 60 s); unchanged re-pull {again.seconds:.1f}s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
