"""How large correlate's saved scope states are, as JSON and as saved, and what the compression costs.

    python -m agents.scope_sizes HISTORY.ndjson --graph GRAPH [--every 5000]

Replays a history (any replay format) through the embedded runtime and, every
`--every` records, saves every live scope as the worker does (`encode_scope`).
Reports the bytes of the largest saved scope and of all saves, as JSON and
compressed, and the time to save and to restore them.
"""

from __future__ import annotations

import argparse
import time
import zlib
from dataclasses import dataclass

from agents.correlate import SCOPE_LEVEL, decode_scope, encode_scope
from agents.keeper import Entry
from pipeline.alerts import InputError
from pipeline.arguments import at_least
from pipeline.config import Config
from pipeline.embedded import Embedded
from pipeline.graph import load_graph
from pipeline.replay import open_input, read_lines
from pipeline.runbooks import load_catalog
from topics.catalog import SavedScope


@dataclass
class Sizes:
    saves: int = 0
    plain: int = 0
    packed: int = 0
    largest_plain: int = 0
    largest_packed: int = 0
    encode_s: float = 0.0
    compress_s: float = 0.0
    decode_s: float = 0.0
    unreadable: int = 0  # lines of the history that are no alert

    def save_all(self, engine: Embedded) -> None:
        """Save and restore every live scope, as the worker's keeper would, and count."""
        for scope, state in engine.scopes.items():
            entry = Entry(scope, 0, SavedScope(partition=0, state=state), extra={"offset_of": {}})
            started = time.perf_counter()
            packed = encode_scope(entry)
            encoded = time.perf_counter()
            decode_scope(packed)
            self.decode_s += time.perf_counter() - encoded
            self.encode_s += encoded - started
            plain = zlib.decompress(packed)
            started = time.perf_counter()
            zlib.compress(plain, SCOPE_LEVEL)
            self.compress_s += time.perf_counter() - started
            self.saves += 1
            self.plain += len(plain)
            self.packed += len(packed)
            self.largest_plain = max(self.largest_plain, len(plain))
            self.largest_packed = max(self.largest_packed, len(packed))

    def report(self) -> str:
        ratio = self.plain / self.packed if self.packed else 0.0
        return "\n".join([
            f"saves            {self.saves:,}",
            f"largest scope    {self.largest_plain:,} bytes as JSON, {self.largest_packed:,} saved",
            f"all saves        {self.plain:,} bytes as JSON, {self.packed:,} saved ({ratio:.1f}x smaller)",
            f"time to save     {self.encode_s:.2f} s, of which compressing {self.compress_s:.2f} s",
            f"time to restore  {self.decode_s:.2f} s",
            *([f"unreadable lines {self.unreadable:,} (skipped, as replay skips them)"] if self.unreadable else []),
        ])


def measure(history: str, graph_path: str, every: int) -> Sizes:
    config = Config()
    engine = Embedded(config, load_graph(graph_path, config.incidents.link_depth), load_catalog(), keep=())
    sizes, chunk = Sizes(), []
    with open_input(history) as stream:
        for line in read_lines(stream, engine.identity.scope):
            sizes.unreadable += line.error is not None
            chunk.extend(line.records)
            if len(chunk) >= every:
                engine.pipe_many(chunk)
                chunk = []
                sizes.save_all(engine)
    engine.pipe_many(chunk)
    sizes.save_all(engine)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m agents.scope_sizes", description=__doc__.split("\n")[0])
    parser.add_argument("history", help="a replay file (NDJSON envelopes, webhooks or records; gzip or not; - for standard input)")
    parser.add_argument("--graph", required=True, help="the service graph")
    parser.add_argument("--every", type=at_least(1), default=5000, help="records between saves (default 5000)")
    args = parser.parse_args()
    try:
        sizes = measure(args.history, args.graph, args.every)
    except InputError as exc:
        parser.exit(2, f"scope_sizes: {exc}\n")
    except OSError as exc:
        parser.exit(2, f"scope_sizes: cannot read {exc.filename}: {exc.strerror}\n")
    print(sizes.report())


if __name__ == "__main__":
    main()
