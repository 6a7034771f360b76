"""Replay ticks in several processes: the assets split among them, every tick in lockstep.

A replay in one process (:class:`~signalcast.ops.replay.ReplayRunner`) runs one core. The
pipeline steps of different assets share nothing but the database (each asset's ingest,
predict and resolve read and write that asset's rows), which is why operators add worker
processes to handle more assets; a replay can do the same. ``processes`` worker processes each
own a fixed share of the assets (round robin in configured order, so an asset always runs in
the same process and its steps keep their order) and run their steps of every tick with a
:class:`ReplayRunner` of their own; the parent sends each tick to all of them, waits for every
one to finish it, then runs the tick's one drain. So ticks never overlap: what is stored is
what the one-process replay stores (``tests/test_replay_inprocess.py`` compares them), only
the order of the assets' rows within a tick differs, as it does between Celery workers.

On SQLite every write session takes the file's one write lock up front (``BEGIN IMMEDIATE``,
:mod:`signalcast.db.engine`); the predict and resolve steps hold it only while they write (their
reads and model calls run in read-only sessions), so the processes overlap: a year of 3 assets
in 11.8 min with 3 processes on 2 cores against 16.9 in one (``bench/bench_replay.py
--processes 3,1``). On Postgres 2 processes gave 1.36x.

Workers are spawned (not forked: a forked database pool or broker connection would be shared
with the parent); each opens its own engine on the same database. A worker that dies (killed,
out of memory) stops the replay with an error naming its assets; ticks already replayed are
stored and a replay started again skips them (their enqueue rows are recorded).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from types import TracebackType

from sqlalchemy.engine import Engine

from signalcast.config import Settings
from signalcast.core.errors import SignalcastError
from signalcast.core.timeframes import utc
from signalcast.ops.replay import ReplayRunner, TickReport


def asset_groups(settings: Settings, processes: int) -> list[list[str]]:
    """The assets of each worker: round robin in configured order, never an empty group.

    >>> from signalcast.config import load_settings
    >>> asset_groups(load_settings(None), 2)
    [['BTC/USDT', 'SOL/USDT'], ['ETH/USDT']]
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    symbols = [a.symbol for a in settings.assets]
    n = min(processes, len(symbols))
    return [symbols[i::n] for i in range(n)]


class ReplayWorkerDied(SignalcastError):
    """A worker process of a parallel replay exited before answering a tick."""


class ParallelReplay:
    """``tick(now)`` as :meth:`ReplayRunner.tick`, its asset steps spread over processes.

    Use as a context manager (the workers are stopped on exit)::

        with ParallelReplay(engine, settings, processes=2, job="replay-1") as replay:
            for now in times:
                report = replay.tick(now)
    """

    def __init__(self, engine: Engine, settings: Settings, *, processes: int,
                 job: str = "replay") -> None:
        self.groups = asset_groups(settings, processes)
        self._drainer = ReplayRunner(engine, settings, job=job, assets=(), drain=True)
        self._timeframe = {a.symbol: a.timeframe for a in settings.assets}
        context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        url = engine.url.render_as_string(hide_password=False)
        try:
            for group in self.groups:
                parent, child = context.Pipe()
                process = context.Process(target=_serve, args=(child, settings, url, job, group),
                                          name=f"signalcast-replay-{'-'.join(group)}",
                                          daemon=True)
                process.start()
                child.close()
                self._workers.append((process, parent))
        except BaseException:
            self.close()
            raise

    def tick(self, now: datetime) -> TickReport:
        now = utc(now)
        workers = list(zip(self._workers, self.groups, strict=True))
        for (process, conn), group in workers:
            try:
                conn.send(now)
            except OSError as exc:
                raise self._died(process, group, now) from exc
        merged = TickReport(now)
        for (process, conn), group in workers:
            try:
                report: TickReport = conn.recv()
            except (EOFError, OSError) as exc:
                raise self._died(process, group, now) from exc
            merged.assets += report.assets
            merged.failures += report.failures
            merged.results.update(report.results)
        if merged.assets:
            drained = self._drainer.drain_tick(now, {self._timeframe[a] for a in merged.assets})
            merged.failures += drained.failures
            merged.results.update(drained.results)
        return merged

    @staticmethod
    def _died(process: multiprocessing.process.BaseProcess, group: list[str],
              now: datetime) -> ReplayWorkerDied:
        process.join(timeout=5)
        return ReplayWorkerDied(
            f"the replay worker of {', '.join(group)} exited (code {process.exitcode}) at the "
            f"tick of {now:%Y-%m-%d %H:%M} UTC; the ticks before it are stored, and a replay "
            "started again from the same time skips them")

    def close(self) -> None:
        for process, conn in self._workers:
            if process.is_alive():
                try:
                    conn.send(None)
                except OSError:
                    pass
        for process, conn in self._workers:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            conn.close()
        self._workers = []

    def __enter__(self) -> ParallelReplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _serve(conn: Connection, settings: Settings, url: str, job: str,
           assets: Sequence[str]) -> None:
    """A worker: the steps of ``assets`` for every tick the parent sends, until ``None``."""
    from signalcast.config.runtime import configure_logging_from_env, set_settings
    from signalcast.db.engine import get_engine

    configure_logging_from_env()
    set_settings(settings)
    engine = get_engine(url)
    runner = ReplayRunner(engine, settings, job=job, assets=assets, drain=False)
    try:
        while (now := conn.recv()) is not None:
            try:
                report = runner.tick(now)
            except Exception as exc:  # a tick that could not even start: report, go on
                report = TickReport(now, failures=[f"replay worker of {', '.join(assets)}: "
                                                   f"{exc!r}"])
            conn.send(report)
    except (EOFError, KeyboardInterrupt):  # the parent is gone or interrupted
        pass
    finally:
        engine.dispose()
