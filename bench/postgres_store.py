"""PostgreSQL storage throughput: a backlog flush through the fleet's commit, against COPY.

On a throwaway PostgreSQL cluster (``hardware_sim/harness/postgres.py``, fsync on, as in
production), the same rows are stored three ways, each into a fresh schema:

- ceiling: PostgreSQL's own, one connection that ``COPY``s the rows straight into the
  partitioned ``readings`` table (binary ``COPY``, as ingest copies them), committing
  once per commit group as ingest does;
- flush with 1, 2 and 4 writers: separate processes, each with its own
  ``PostgresRepository``, commit groups of batches through ``commit`` (exactly-once marks,
  gateway locks, COPY, per-minute and per-hour rollups). Batches are dealt to the writers
  round robin, so one gateway's batches reach different writers out of order, as a
  shared subscription deals them.

No MQTT: this measures the storage path alone (validation and the broker are
``bench/ingest.py``'s). The rows are built and validated before the clock starts. Prints a
JSON object as its last line; target from issue 14: the flush at >= 80 % of the ceiling.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from multiprocessing.synchronize import Barrier

import psycopg

from fleet.postgres_ingest import COPY_READINGS, readings_copy
from fleet.postgres_repository import PostgresRepository
from fleet.postgres_schema import days_needed, ensure_partitions
from fleet.reading_rollups import ReadingColumns
from fleet.repository import NewGateway, Received
from hardware_sim.harness.postgres import running_postgres
from protocol import DataBatch

T0 = 1_750_000_000.0
ROWS_PER_BATCH = 100
CHANNELS = ("rain", "level", "tilt", "soil")


def gateway_id(n: int) -> str:
    return f"gw-bench-{n:05d}"


def build_batches(gateways: int, batches: int) -> list[DataBatch]:
    """Every gateway's backlog, batch by batch, gateways interleaved as they arrive."""
    out = []
    for b in range(batches):
        for g in range(gateways):
            first = b * ROWS_PER_BATCH + 1
            rows = [
                (s, T0 + 10 * s, CHANNELS[s % len(CHANNELS)], s * 0.25, 0)
                for s in range(first, first + ROWS_PER_BATCH)
            ]
            out.append(
                DataBatch(
                    gateway_id=gateway_id(g),
                    first_seq=first,
                    last_seq=first + ROWS_PER_BATCH - 1,
                    rows=rows,
                )
            )
    return out


def prepare(url: str, gateways: int, every: list[DataBatch]) -> None:
    """Schema, enrolled gateways and the day partitions the rows need."""
    store = PostgresRepository(url, pool_size=1)
    now = time.time()
    for g in range(gateways):
        _token, secret = store.create_enrollment_token("site", now + 600, None, None, now)
        gateway = NewGateway(gateway_id(g), f"key-{g}", "$7$x", None, None)
        store.redeem_enrollment_token(secret, gateway, now)
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        stamps = [row[1] for batch in every for row in batch.rows]
        ensure_partitions(conn, days_needed(stamps), max(stamps))  # the rows' own now


def groups(batches: list[DataBatch], size: int) -> list[list[DataBatch]]:
    return [batches[i : i + size] for i in range(0, len(batches), size)]


def copy_ceiling(url: str, gateways: int, every: list[DataBatch], group: int) -> float:
    """Seconds to COPY every row, one transaction per commit group."""
    with psycopg.connect(url) as conn:
        nums: dict[str, int] = dict(conn.execute("SELECT id, num FROM gateways").fetchall())
        channel = {name: i + 1 for i, name in enumerate(CHANNELS)}
        # Encoded before the clock starts: the ceiling is the server's, not the client's.
        streams = [
            readings_copy(
                ReadingColumns.of_rows(
                    [
                        (nums[batch.gateway_id], seq, ts, channel[name], value, quality)
                        for batch in part
                        for seq, ts, name, value, quality in batch.rows
                    ]
                )
            )
            for part in groups(every, group)
        ]
        start = time.perf_counter()
        for stream in streams:
            with conn.cursor() as cur, cur.copy(COPY_READINGS) as copy:
                copy.write(stream)
            conn.commit()
        return time.perf_counter() - start


def writer(url: str, share: list[DataBatch], group: int, barrier: Barrier) -> None:
    store = PostgresRepository(url, pool_size=1)
    received = [[Received(b.gateway_id, T0, b) for b in part] for part in groups(share, group)]
    store.commit(received[0][:0])  # open the pool's connection before the clock
    barrier.wait()
    for part in received:
        result = store.commit(part)
        if result.rejected:
            raise SystemExit(f"rejected: {result.rejected[:3]}")
    store.close()


def flush(url: str, every: list[DataBatch], writers: int, group: int) -> float:
    """Seconds for ``writers`` processes to commit every batch (dealt round robin)."""
    context = mp.get_context("fork")
    barrier = context.Barrier(writers + 1)
    shares = [every[i::writers] for i in range(writers)]
    processes = [
        context.Process(target=writer, args=(url, share, group, barrier)) for share in shares
    ]
    for process in processes:
        process.start()
    barrier.wait()
    start = time.perf_counter()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"a writer failed with exit code {process.exitcode}")
    return time.perf_counter() - start


def held(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert row is not None
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=3, help="per gateway, 100 rows each")
    parser.add_argument("--group", type=int, default=8, help="batches per commit")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    every = build_batches(args.gateways, args.batches)
    total = len(every) * ROWS_PER_BATCH
    result: dict[str, object] = {
        "rows": total,
        "gateways": args.gateways,
        "rows_per_batch": ROWS_PER_BATCH,
        "batches_per_commit": args.group,
        "cpus": os.cpu_count(),
    }
    with running_postgres(durable=True) as cluster:
        with cluster.fresh_schema() as url:
            prepare(url, args.gateways, every)
            ceiling = total / copy_ceiling(url, args.gateways, every, args.group)
            assert held(url) == total
        result["copy_ceiling_rows_per_s"] = round(ceiling)
        print(f"COPY ceiling: {ceiling:,.0f} rows/s")
        flushes = {}
        for writers in args.writers:
            with cluster.fresh_schema() as url:
                prepare(url, args.gateways, every)
                rate = total / flush(url, every, writers, args.group)
                assert held(url) == total
            flushes[str(writers)] = {
                "rows_per_s": round(rate),
                "of_ceiling": round(rate / ceiling, 3),
            }
            print(f"flush, {writers} writer(s): {rate:,.0f} rows/s ({rate / ceiling:.0%})")
        result["flush"] = flushes
    print(json.dumps(result))


if __name__ == "__main__":
    main()
