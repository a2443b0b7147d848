"""``bench/ab.py TREE [TREE ...]``: compare source trees of sourcecheck on this machine, in turns.

For a change whose effect is smaller than this machine's drift (its speed moves by tens
of % within minutes): one run of ``make bench`` before and one after cannot tell it. This
starts the benchmark's stack (bench/run.py's Stack: Redis, an API, a worker) from each tree,
side by side, then measures them in alternating rounds, the order rotating from round to
round, so that every tree sees the same stretch of the machine:

- sequential: a no-op's round trip through the tree's own Redis and worker, and tests of
  the fast local HTTP server (p50 of each, and their ratio, as ``e2e_p50_over_raw_rtt``);
- load: 32 clients of each kind (tests/s, their ratio) and the CPU time per test of the
  API, the worker with its probe processes, and Redis (read from /proc).

A tree is a checkout with a change in it, for instance
``git worktree add /tmp/try HEAD`` and then an edit in /tmp/try::

    .venv/bin/python bench/ab.py . /tmp/try --rounds 8

The trees' processes run their own code (uvicorn, Celery and the probe processes start in
the tree's folder, which comes first on their import path) with this checkout's virtual
environment: a change of dependencies needs a tree with its own. Organizations and keys
are made with this checkout's CLI.

Not a test. An A/A run here (this checkout against a worktree of the same commit, 6
rounds) differed by 5 % in e2e p50, 3.5 % in e2e tests/s and 3 % in the API's CPU per
test, and one of 2 rounds by 25 % in e2e p50: a smaller difference is noise; quote one
only where it repeats over runs, with the trees swapped.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from run import Servers, Stack, e2e_load, e2e_sequential, raw_load, raw_sequential, source_test_path

CLIENTS = 32


@dataclass
class Tree:
    root: Path
    stack: Stack
    path: str
    token: str
    rtts: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    raw_seconds: float = 0.0
    e2e_seconds: float = 0.0
    cpu_ms: dict[str, float] = field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "trees", nargs="+", type=Path, help="source trees to compare (each with api/, worker/, connectors/)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each measurement per tree (default 6)")
    parser.add_argument(
        "--sequential", type=int, default=100, help="sequential round trips of each kind per round (default 100)"
    )
    parser.add_argument(
        "--per-client", type=int, default=10, help=f"tests per client of the {CLIENTS} in each load round (default 10)"
    )
    args = parser.parse_args()
    for root in args.trees:
        if not (root / "worker" / "app.py").is_file():
            parser.error(f"{root} is not a sourcecheck source tree (no worker/app.py)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    servers = Servers()
    trees: list[Tree] = []
    with tempfile.TemporaryDirectory(prefix="sourcecheck-ab-") as tmp:
        try:
            for i, root in enumerate(args.trees):
                work = Path(tmp) / str(i)
                work.mkdir()
                stack = Stack(work, root=root.resolve())
                stack.start()
                org = stack.cli("org", "create", "--id", "org_ab")
                trees.append(Tree(root, stack, source_test_path(org), stack.cli("apikey", "create", "--org", org)))
            for tree in trees:  # warm-up, not counted
                raw_sequential(tree.stack.app, 50)
                asyncio.run(e2e_sequential(tree.stack.api_port, tree.path, servers.fast_body, tree.token, 50))
            for round_ in range(args.rounds):
                for tree in trees[round_ % len(trees) :] + trees[: round_ % len(trees)]:
                    measure(tree, servers, args.sequential, args.per_client)
        finally:
            for tree in trees:
                tree.stack.stop()
    report(trees, args.rounds * CLIENTS * args.per_client)


def measure(tree: Tree, servers: Servers, sequential: int, per_client: int) -> None:
    stack = tree.stack
    tree.rtts += raw_sequential(stack.app, sequential)
    tree.e2e += asyncio.run(e2e_sequential(stack.api_port, tree.path, servers.fast_body, tree.token, sequential))
    tree.raw_seconds += raw_load(stack.app, CLIENTS, per_client)
    with stack.cpu_into(tree.cpu_ms):
        tree.e2e_seconds += asyncio.run(
            e2e_load(stack.api_port, tree.path, servers.fast_body, tree.token, CLIENTS, per_client)
        )


def report(trees: list[Tree], load_tests: int) -> None:
    print(
        f"\n{'tree':<32}{'raw p50':>9}{'e2e p50':>9}{'ratio':>7}{'raw tps':>9}{'e2e tps':>9}{'ratio':>7}"
        "   cpu ms/test api worker redis"
    )
    for tree in trees:
        raw_p50, e2e_p50 = statistics.median(tree.rtts), statistics.median(tree.e2e)
        raw_tps, e2e_tps = load_tests / tree.raw_seconds, load_tests / tree.e2e_seconds
        cpu = " ".join(f"{tree.cpu_ms[name] / load_tests:.2f}" for name in ("api", "worker", "redis"))
        print(
            f"{str(tree.root)[-32:]:<32}{raw_p50:>9.2f}{e2e_p50:>9.2f}{e2e_p50 / raw_p50:>7.2f}"
            f"{raw_tps:>9.0f}{e2e_tps:>9.0f}{e2e_tps / raw_tps:>7.2f}   {cpu}"
        )


if __name__ == "__main__":
    main()
