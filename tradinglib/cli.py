"""The ``tradinglib`` command line. Each command is a thin layer over library calls."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from tradinglib.config import Settings, load_settings
from tradinglib.exceptions import InputError, TradingLibError
from tradinglib.paths import project_root, resolve

if TYPE_CHECKING:
    from tradinglib.runs import RunResult, Validator

console = Console()


def _cmd_data_info(args: argparse.Namespace, settings: Settings) -> None:
    from tradinglib.data import describe_bars, format_bars_info, load_bars

    bars = load_bars(args.source, tz=args.tz,
                     duplicates="merge" if args.merge_duplicates else "error")
    print(format_bars_info(describe_bars(bars), args.source))


def _cmd_data_list(args: argparse.Namespace, settings: Settings) -> None:
    from tradinglib.data import BUILTIN_SOURCES

    for name, text in BUILTIN_SOURCES.items():
        print(f"{name:16} {text}")


def _cmd_features(args: argparse.Namespace, settings: Settings) -> None:
    from tradinglib.features import describe_features

    print(describe_features())


def _cmd_config(args: argparse.Namespace, settings: Settings) -> None:
    for name, value in settings.model_dump().items():
        print(f"{name.upper()}={value}")


def _train(args: argparse.Namespace, settings: Settings) -> tuple[Any, Path]:
    from tradinglib.data import load_bars
    from tradinglib.risk import RiskLimits
    from tradinglib.train import train_model

    bars = load_bars(args.data)
    out = Path(args.out)
    console.print(f"training PPO on {args.data} ({len(bars)} bars), {args.steps} steps, "
                  f"seed {args.seed}")
    started = time.perf_counter()
    card = train_model(
        bars, source=args.data, out=out, steps=args.steps, seed=args.seed,
        holdout_fraction=args.holdout, limits=RiskLimits.from_settings(settings),
        cash=args.cash, progress=not args.quiet,
    )
    console.print(f"trained in {time.perf_counter() - started:.1f}s")
    return card, out


def _metrics_table(card: Any) -> Table:
    table = Table(title="Evaluation (deterministic policy, costs and risk limits applied)")
    table.add_column("figure")
    ranges = [("train", card.training_data), ("holdout", card.holdout_data)]
    for name, info in ranges:
        table.add_column(f"{name} {info.start[:10]}..{info.end[:10]}", justify="right")
    rows = ["total_return", "buy_and_hold_return", "sharpe", "max_drawdown", "trades",
            "final_equity"]
    for row in rows:
        cells = [_fmt(row, card.metrics[name].get(row)) for name, _ in ranges]
        table.add_row(row, *cells)
    return table


def _fmt(name: str, value: object) -> str:
    """A metric for people: signed percent for returns and drawdowns, 2 decimals else."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and name.endswith(("return", "drawdown")):
        return f"{value:+.2%}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _cmd_train(args: argparse.Namespace, settings: Settings) -> None:
    from tradinglib.modelcard import card_path

    card, out = _train(args, settings)
    console.print(_metrics_table(card))
    print(f"model: {out}\ncard:  {card_path(out)}")


def _backtest(model: Path, data: str, settings: Settings, *, start: str | None,
              end: str | None, cash: float, slippage_bps: float, folder: Path | None) -> Path:
    """Backtest ``model`` on ``data``; print the summary; write the tables to a folder."""
    from tradinglib.backtest import run_backtest, summary_rows
    from tradinglib.costs import Costs
    from tradinglib.data import load_bars
    from tradinglib.inference import LockedPolicy
    from tradinglib.risk import RiskLimits

    policy = LockedPolicy.load(model)
    bars = load_bars(data)
    started = time.perf_counter()
    result = run_backtest(bars, policy, limits=RiskLimits.from_settings(settings),
                          costs=Costs(slippage_bps=slippage_bps), cash=cash, start=start,
                          end=end)
    elapsed = time.perf_counter() - started
    first, last = result.equity.index[0], result.equity.index[-1]
    table = Table(title=f"Backtest {model.name} on {data} {first:%Y-%m-%d}..{last:%Y-%m-%d}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in summary_rows(result.metrics):
        table.add_row(name, value)
    console.print(table)
    console.print(f"{result.metrics['bars']:,} bars in {elapsed:.2f}s "
                  f"({result.metrics['bars'] / elapsed:,.0f} bars/s), backend {policy.backend}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return result.save(folder or Path("backtests") / f"{stamp}-{model.stem}")


def _cmd_backtest(args: argparse.Namespace, settings: Settings) -> None:
    folder = _backtest(Path(args.model), args.data, settings, start=args.start, end=args.end,
                       cash=args.cash, slippage_bps=args.slippage_bps,
                       folder=Path(args.out) if args.out else None)
    print(f"results: {folder}")


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The main job on built-in data, every step a papermill run archived in runs/:
    train (or reuse the cached model), backtest it on the held-out range, trade a paper
    session through the IB gateway simulator (the real ib_async client over loopback),
    and render the report on it."""
    from tradinglib import runs

    root = project_root()
    err = Console(stderr=True)
    validate = _validator(err)
    folders: list[tuple[str, Path]] = []
    started = time.perf_counter()
    for kind in ("train", "backtest", "paper", "report"):
        file = root / "params" / f"{kind}.yaml"
        overrides: dict[str, Any] = {}
        if kind == "train" and args.steps is not None:
            overrides["steps"] = args.steps
        if kind == "report":
            overrides["run_dir"] = str(folders[-1][1])
        params = {**runs.load_params(file), **overrides}
        with contextlib.ExitStack() as stack:
            if kind == "paper":
                overrides.update(_demo_gateway(stack, params, root, err))
                params.update(overrides)
            result = _run_one(kind, params, label="demo", params_file=file,
                              overrides=overrides, timeout=None, root=root,
                              validate=validate, err=err)
        folders.append((kind, result.path))
        if not result.ok:
            print(result.path)
            return result.exit_code
    print(f"\ndemo done in {time.perf_counter() - started:.0f}s; runs:")
    for kind, folder in folders:
        print(f"  {kind:9} {folder}")
    print(f"report: {folders[-1][1] / runs.HTML_FILE}")
    return 0


DEMO_BAR_SECONDS = 0.1
"""Wall seconds per replayed bar in the demo's gateway."""


def _demo_gateway(stack: contextlib.ExitStack, params: dict[str, Any], root: Path,
                  err: Console) -> dict[str, Any]:
    """Start the IB gateway simulator on a free loopback port, replaying the paper
    parameters' data from the model's held-out start; the parameters that point the
    paper session at it."""
    from tradinglib.data import load_bars, source_path
    from tradinglib.gateway import Gateway, GatewayThread
    from tradinglib.modelcard import read_card

    card = read_card(resolve(params["model_path"], root))
    start = card.holdout_data.start if card.holdout_data is not None else None
    data = str(params.get("data", "googl-daily"))
    bars = load_bars(source_path(data, root))
    gateway = stack.enter_context(GatewayThread(Gateway(
        bars, symbol=str(params.get("symbol", "GOOGL")), start=start,
        bar_seconds=DEMO_BAR_SECONDS, wait_for_client=True)))
    err.print(f"gateway simulator on 127.0.0.1:{gateway.port}: {data} from {start}, one bar "
              f"every {DEMO_BAR_SECONDS} s once the session connects", markup=False,
              highlight=False, soft_wrap=True)
    return {"broker": "ib", "ib_port": gateway.port}


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from tradinglib.service import serve

    serve(args.model, settings, host=args.host, port=args.port)


def _cmd_gateway(args: argparse.Namespace, settings: Settings) -> None:
    """``tradinglib gateway``: serve the TWS protocol over replayed bars until Ctrl-C."""
    import logging

    from tradinglib.costs import Costs
    from tradinglib.data import load_bars
    from tradinglib.gateway import Faults, Gateway, serve_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    faults = Faults(drop_after_messages=args.drop_after_messages, drop_at=_bar(args.drop_at),
                    fill_delay_seconds=args.fill_delay, reject_next=args.reject_next,
                    stop_bars_after=args.stop_bars_after, lose_ib_link=args.lose_ib_link)
    gateway = Gateway(load_bars(args.data), symbol=args.symbol, account=args.account,
                      cash=args.cash, costs=Costs(slippage_bps=args.slippage_bps),
                      bar_seconds=args.bar_seconds, start=_bar(args.start), fill=args.fill,
                      faults=faults, wait_for_client=args.wait_for_client)
    serve_forever(gateway, host=args.host, port=args.port, allow_remote=args.allow_remote,
                  announce=lambda line: print(line, flush=True))


def _bar(text: str | None) -> int | str | None:
    """A bar given on the command line: an index (``250``, ``-1``) or a time."""
    return int(text) if text is not None and text.lstrip("-").isdigit() else text


def _add_gateway_parser(sub: Any) -> None:
    """The ``gateway`` command."""
    p = sub.add_parser(
        "gateway", help="TWS/IB Gateway simulator over replayed bars (paper account)",
        description="Serve the TWS socket protocol on 127.0.0.1 for ib_async / ib_insync: a "
                    "paper account, bars replayed from --data, fills with the backtest's "
                    "cost model. Runs until Ctrl-C or SIGTERM.")
    p.add_argument("--data", required=True, help="built-in name or CSV/Parquet path")
    p.add_argument("--symbol", default="GOOGL", help="the stock the data is of (GOOGL)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (the gateway has no authentication)")
    p.add_argument("--port", type=int, default=4002, help="TCP port, 0 for any (4002)")
    p.add_argument("--account", default="DU1234567", help="paper account code")
    p.add_argument("--cash", type=float, default=100_000.0, help="starting cash, USD")
    p.add_argument("--bar-seconds", type=float, default=1.0,
                   help="wall seconds per replayed bar (1.0)")
    p.add_argument("--start", help="first 'now' bar: index or time (default: bar 250)")
    p.add_argument("--wait-for-client", action="store_true",
                   help="hold the replay at --start until the first API client connects")
    p.add_argument("--fill", choices=("next_open", "close"), default="next_open",
                   help="market orders fill at the next bar's open (default) or the close")
    p.add_argument("--slippage-bps", type=float, default=0.0,
                   help="adverse slippage per fill, basis points")
    p.add_argument("--drop-after-messages", type=int, metavar="N",
                   help="fault: close the client socket after N messages")
    p.add_argument("--drop-at", metavar="BAR", help="fault: drop every client at this bar")
    p.add_argument("--fill-delay", type=float, default=0.0, metavar="SECONDS",
                   help="fault: report fills this many seconds late")
    p.add_argument("--reject-next", metavar="REASON", help="fault: reject the first order")
    p.add_argument("--stop-bars-after", type=int, metavar="N",
                   help="fault: send clients N more bars, then none (stale data)")
    p.add_argument("--lose-ib-link", type=int, metavar="N",
                   help="fault: TWS loses IB (error 1100, socket kept) for N bars, then "
                        "restores it (1102)")
    p.set_defaults(func=_cmd_gateway)


# --------------------------------------------------------------------------- runs


class _ConsoleProgress:
    """Per-cell progress for ``tradinglib run``: one line per finished cell, plus a spinner
    with the elapsed time of the running cell where the console is a terminal."""

    def __init__(self, out: Console) -> None:
        self._out = out
        self._status: Any = None
        self._label = ""

    def run_started(self, run_id: str, notebook: Path) -> None:
        self._out.print(f"run {run_id}: {notebook}", markup=False, highlight=False,
                        soft_wrap=True)

    def cell_started(self, number: int, total: int, label: str) -> None:
        self._label = label
        if self._out.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._status = Progress(SpinnerColumn(), TimeElapsedColumn(),
                                    TextColumn("{task.description}", markup=False),
                                    console=self._out, transient=True)
            self._status.add_task(f"[{number}/{total}] {label}", total=None)
            self._status.start()

    def cell_finished(self, number: int, total: int, seconds: float, ok: bool) -> None:
        self.close()
        width = len(str(total))
        mark = "ok" if ok else "FAILED"
        self._out.print(f"  [{number:>{width}}/{total}] {seconds:7.1f}s {mark:6} {self._label}",
                        markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Stop the spinner, if any."""
        if self._status is not None:
            self._status.stop()
            self._status = None


def _params_path(given: str | None, kind: str, root: Path) -> Path:
    """``-f``: a path from the working directory, else from the project root; default
    ``params/<kind>.yaml``."""
    if given is None:
        default = root / "params" / f"{kind}.yaml"
        if not default.is_file():
            raise InputError(f"no parameter file given (-f) and {default} does not exist")
        return default
    here = Path(given).expanduser()
    if here.is_file() or here.is_absolute():
        return here.resolve()
    return resolve(given, root)


def _validator(err: Console) -> Validator | None:
    import importlib.util

    from tradinglib import runs

    if importlib.util.find_spec("tradinglib.params") is None:
        err.print("warning: tradinglib.params is not installed; parameters are passed to "
                  "the notebook unvalidated", markup=False, highlight=False, soft_wrap=True)
        return None
    return runs.validate_with_params


def _key_metrics(results: dict[str, Any]) -> dict[str, object]:
    """The key metrics of a run's results: top level first, then a ``metrics`` or
    ``summary`` object."""
    from tradinglib.runs import KEY_METRICS

    places = [results, *(results[k] for k in ("metrics", "summary")
                         if isinstance(results.get(k), dict))]
    found: dict[str, object] = {}
    for name in KEY_METRICS:
        for place in places:
            if name in place:
                found[name] = place[name]
                break
    return found


def _report_result(result: RunResult, err: Console) -> None:
    """Print a finished run's outcome: a summary line (stdout), and the error (stderr)."""
    from tradinglib.runs import HTML_FILE, KERNEL_LOG, NOTEBOOK_FILE

    if result.ok:
        metrics = ", ".join(f"{k} {_fmt(k, v)}"
                            for k, v in _key_metrics(result.results).items())
        print(f"ok: {result.run_id} in {result.duration_s:.1f}s"
              + (f" ({metrics})" if metrics else ""))
        if (result.path / HTML_FILE).is_file():
            print(f"report: {result.path / HTML_FILE}")
        return
    error = result.error
    if error is None:
        return
    lines = [f"failed: {result.run_id} after {result.duration_s:.1f}s"]
    if error.stage == "parameters":
        lines.append(f"  bad parameters: {error.evalue}")
    elif error.stage == "interrupted":
        where = f" in cell {error.cell}" if error.cell else ""
        lines.append(f"  {error.evalue}{where}")
    elif error.stage == "html":
        lines.append(f"  rendering {HTML_FILE} failed: {error.ename}: {error.evalue}")
    else:
        lines.append(f"  {error.summary()}")
        lines.extend(f"    | {line}" for line in (error.source or "").splitlines())
        lines.append(f"  details: {result.path / NOTEBOOK_FILE} and {KERNEL_LOG}")
    sys.stdout.flush()
    err.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    sys.stderr.flush()


def _run_one(kind: str, params: dict[str, Any], *, label: str, params_file: Path | None,
             overrides: dict[str, Any], timeout: int | None, root: Path,
             validate: Validator | None, err: Console) -> RunResult:
    from tradinglib import runs

    progress = _ConsoleProgress(err)
    try:
        result = runs.run_notebook(
            runs.notebook_for(kind, root), params, kind=kind, label=label,
            runs_dir=runs.runs_folder(root), timeout=timeout, validate=validate,
            progress=progress, params_file=params_file, overrides=overrides, root=root)
    except runs.RunInterrupted as stop:
        progress.close()
        _report_result(stop.result, err)
        print(stop.result.path)
        raise
    finally:
        progress.close()
    _report_result(result, err)
    return result


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("terminated by SIGTERM")


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """``tradinglib run``: SIGTERM (a scheduler stopping the job) is handled like Ctrl-C,
    so the run is archived as interrupted before the command exits."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _run_command(args)  # signal handlers belong to the main thread
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run_command(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_command(args: argparse.Namespace) -> int:
    from tradinglib import runs

    if (args.calendar or args.now) and not args.at_open:
        raise InputError("--calendar and --now only apply with --at-open")
    if args.at_open and args.kind != "paper":
        raise InputError(f"--at-open applies to 'run paper' only, not 'run {args.kind}'")
    root = project_root()
    err = Console(stderr=True)
    file = _params_path(args.params_file, args.kind, root)
    overrides = [(name, value) for name, value in args.param or []]
    params = runs.load_params(file, overrides)
    label = runs.validate_label(args.label or file.stem)
    if args.kind == "report" and isinstance(params.get("run_dir"), str) \
            and not resolve(params["run_dir"], root).is_dir():
        params["run_dir"] = str(runs.find_run(runs.runs_folder(root), params["run_dir"]))
    report_file: Path | None = None
    report_params: dict[str, Any] = {}
    if args.kind == "paper" and not args.no_report:  # read before the session, not after
        if args.report_params or (root / "params" / "report.yaml").is_file():
            report_file = _params_path(args.report_params, "report", root)
        report_params = runs.load_params(report_file)
    given = {n: runs.parse_value(v) for n, v in overrides}
    if args.at_open:
        timing = _at_open(args, params)
        if timing is None:
            return 0
        params.update(timing)
        given.update(timing)
    timeout = args.timeout or None
    validate = _validator(err)
    common: dict[str, Any] = {"timeout": timeout, "root": root, "validate": validate,
                              "err": err}
    result = _run_one(args.kind, params, label=label, params_file=file, overrides=given,
                      **common)
    if args.kind != "paper" or args.no_report:
        print(result.path)
        return result.exit_code
    if not result.ok:
        err.print("report skipped: the paper run failed", markup=False, highlight=False)
        print(result.path)
        return result.exit_code
    print(f"paper run: {result.path}")
    report_params["run_dir"] = str(result.path)
    report = _run_one("report", report_params, label=label, params_file=report_file,
                      overrides={"run_dir": str(result.path)}, **common)
    print(report.path)
    return report.exit_code


def _at_open(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any] | None:
    """``run paper --at-open``: print the plan; wait for the open if it is ahead (Ctrl-C
    and SIGTERM interrupt). Returns the parameters to add (``stop_at``, the session's
    close minus ``flatten_margin_minutes``, or an earlier ``stop_at`` given; none for a
    replay), or None when not trading now.

    Raises:
        InputError: bad parameters, an unknown calendar or a bad ``--now``.
        RetryableError: the clock did not reach the open within the wait limit.
    """
    import pandas as pd

    from tradinglib import schedule
    from tradinglib.exceptions import RetryableError
    from tradinglib.params import validate_params

    paper = validate_params("paper", params)
    offset = pd.Timedelta(0) if args.now is None else \
        schedule.parse_time(args.now, "--now") - pd.Timestamp.now(tz="UTC")

    def clock() -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC") + offset

    plan = schedule.plan_at_open(
        clock(), args.calendar or schedule.DEFAULT_CALENDAR,
        replay=paper.replay and paper.broker == "sim",  # an IB session is live, always
        flatten_margin=pd.Timedelta(minutes=paper.flatten_margin_minutes))
    print(plan.message, flush=True)
    if plan.start_at is None:
        return None
    if not schedule.wait_until(plan.start_at, now=clock):
        raise RetryableError(f"the clock did not reach {plan.start_at.isoformat()} within "
                             f"{schedule.DEFAULT_WAIT_LIMIT}; check the system clock")
    if plan.deadline is None:
        return {}
    stop = plan.deadline if paper.stop_at is None else \
        min(plan.deadline, schedule.parse_time(paper.stop_at, "stop_at"))
    return {"stop_at": stop.isoformat()}


def _cmd_runs_list(args: argparse.Namespace, settings: Settings) -> None:
    from tradinglib.runs import KEY_METRICS, list_runs, runs_folder

    folder = runs_folder()
    infos = list_runs(folder, kind=args.kind)
    shown = infos[-args.last:] if args.last else infos
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    if not infos:
        print(f"no runs in {folder}" + (f" of kind {args.kind}" if args.kind else ""))
        return
    table = Table(title=f"runs in {folder}"
                  + (f" (last {len(shown)} of {len(infos)}; --last 0 for all)"
                     if len(shown) < len(infos) else ""))
    for name in ("run", "kind", "label", "status", "duration"):
        table.add_column(name, no_wrap=name == "run")
    for name in KEY_METRICS:
        table.add_column(name, justify="right")
    table.add_column("error")
    for info in shown:
        metrics = _key_metrics(info.results)
        table.add_row(
            info.run_id, info.kind, info.label, info.status,
            "" if info.duration_s is None else f"{info.duration_s:.1f}s",
            *(_fmt(n, metrics[n]) if n in metrics else "" for n in KEY_METRICS),
            info.error or "")
    out.print(table)


def _result_lines(values: dict[str, Any], indent: int) -> list[str]:
    """Results as ``name: value`` lines; objects nested one level deeper, long lists cut."""
    lines = []
    for key, value in values.items():
        if isinstance(value, dict) and value and indent < 6:
            lines.append(f"{' ' * indent}{key}:")
            lines.extend(_result_lines(value, indent + 2))
            continue
        text = json.dumps(value) if isinstance(value, (list, dict)) else _fmt(key, value)
        lines.append(f"{' ' * indent}{key}: {text if len(text) <= 100 else text[:97] + '...'}")
    return lines


def _cmd_runs_show(args: argparse.Namespace, settings: Settings) -> None:
    from tradinglib.results import read_results
    from tradinglib.runs import PARAMS_FILE, find_run, read_manifest, runs_folder, verify_run

    folder = find_run(runs_folder(), args.run)
    m = read_manifest(folder)
    notebook = m.get("notebook") or {}
    git = m.get("git")
    lines = [
        f"run:        {m.get('id')}",
        f"folder:     {folder}",
        f"kind:       {m.get('kind')}    label: {m.get('label')}",
        f"status:     {m.get('status')}",
        f"started:    {m.get('started')}    finished: {m.get('finished')}    "
        f"duration: {m.get('duration_s')}s",
        f"notebook:   {notebook.get('source')} (sha256 {str(notebook.get('sha256'))[:12]}, "
        f"kernel {notebook.get('kernel')}, cell timeout {notebook.get('cell_timeout_s')}s)",
        "git:        " + (f"{git.get('commit', '')[:12]}" + (" (dirty)" if git.get("dirty")
                                                              else "") if git else "n/a"),
        f"python:     {(m.get('python') or {}).get('version')}    "
        + ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items() if v),
    ]
    for name, info in (m.get("artifacts") or {}).items():
        if isinstance(info, dict):
            what = info.get("path") or info.get("source")
            sha = info.get("sha256")
            lines.append(f"{name + ':':11} {what} " + (f"sha256 {sha}" if sha else
                                                       f"({info.get('error')})"))
        else:
            lines.append(f"{name + ':':11} {info}")
    error = m.get("error")
    if isinstance(error, dict):
        where = f"cell {error.get('cell')}: " if error.get("cell") else ""
        lines.append(f"error:      [{error.get('stage')}] {where}{error.get('ename')}: "
                     f"{error.get('evalue')}")
        lines.extend(f"            | {line}"
                     for line in str(error.get("source") or "").splitlines())
    print("\n".join(lines))
    params_text = (folder / PARAMS_FILE).read_text(encoding="utf-8") \
        if (folder / PARAMS_FILE).is_file() else ""
    print("\nparameters:")
    print("\n".join(f"  {line}" for line in params_text.strip().splitlines()) or "  (none)")
    results = read_results(folder)
    print("\nresults:")
    print("\n".join(_result_lines(results, indent=2)) or "  (none recorded)")
    files = m.get("files") or {}
    print(f"\nfiles ({len(files)} + manifest.json):")
    for name, info in files.items():
        print(f"  {info.get('bytes', 0):>10,}  {str(info.get('sha256'))[:12]}  {name}")
    problems = verify_run(folder)
    print("integrity:  " + ("every file matches its sha256" if not problems else
                            f"{len(problems)} problem(s): " + "; ".join(problems)))


def _cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    """``tradinglib sweep``: every point of a sweep file as an archived run, on Dask."""
    from tradinglib.runs import HTML_FILE
    from tradinglib.sweep import load_sweep, run_sweep
    from tradinglib.sweep.progress import ConsoleSweepProgress

    root = project_root()
    sweep = load_sweep(_params_path(args.sweep_file, "sweep", root), root)
    where = args.scheduler or f"a LocalCluster of {args.workers} worker processes"
    print(f"sweep {sweep.name} ({sweep.notebook}) on {where}")
    progress = ConsoleSweepProgress(Console(stderr=True))
    try:
        outcome = run_sweep(sweep, workers=args.workers, scheduler=args.scheduler, root=root,
                            timeout=args.timeout or None, progress=progress)
    finally:
        progress.close()
    resumed = sum(o.skipped for o in outcome.outcomes)
    if not outcome.ran:
        print(f"nothing new to run: all {resumed} points are archived ok (resumed)")
    else:
        print(f"{len(outcome.points) - outcome.failed} of {len(outcome.points)} points ok "
              f"({resumed} resumed, {outcome.ran} run in {outcome.wall_s:.1f}s)")
    for point, result in zip(outcome.points, outcome.outcomes, strict=True):
        if result.error_text:
            print(f"  failed: {point.describe()}: {result.error_text}")
    for folder in outcome.leftovers:
        print(f"  incomplete run folder (its worker died): {folder}")
    print(f"summary: {outcome.summary}")
    if outcome.report is not None and not outcome.report.ok and outcome.report.error:
        print(f"report failed: {outcome.report.error.summary()} ({outcome.report.path})")
    elif (outcome.folder / HTML_FILE).is_file():
        print(f"report:  {outcome.folder / HTML_FILE}")
    print(outcome.folder)
    return 0 if outcome.ok else 1


def _add_train_args(p: argparse.ArgumentParser, *, data: str | None, steps: int,
                    out: str | None) -> None:
    p.add_argument("--data", default=data, required=data is None,
                   help="built-in name (googl-daily, eurusd-hourly) or a CSV/Parquet path")
    p.add_argument("--steps", type=int, default=steps, help="PPO environment steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out, required=out is None, help="models/NAME.zip")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of bars, at the end, kept out of training (default 0.2)")
    p.add_argument("--cash", type=float, default=100_000.0, help="starting cash, USD")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tradinglib`` command."""
    parser = argparse.ArgumentParser(
        prog="tradinglib", description="Research-to-paper-trading workflow for an RL agent.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="inspect market data").add_subparsers(
        dest="data_command", required=True, metavar="ACTION")
    info = data.add_parser("info", help="rows, range, frequency and gaps of a data source")
    info.add_argument("source", help="built-in name or CSV/Parquet path")
    info.add_argument("--tz", default="UTC", help="timezone of naive timestamps (default UTC)")
    info.add_argument("--merge-duplicates", action="store_true",
                      help="merge rows sharing a timestamp into one bar (tick data)")
    info.set_defaults(func=_cmd_data_info)
    data.add_parser("list", help="built-in data sources").set_defaults(func=_cmd_data_list)

    sub.add_parser("features", help="the 26 observation features").set_defaults(
        func=_cmd_features)
    sub.add_parser("config", help="effective configuration (environment and .env)"
                   ).set_defaults(func=_cmd_config)

    train = sub.add_parser("train", help="train PPO and write the model zip and card")
    _add_train_args(train, data=None, steps=20_000, out=None)
    train.set_defaults(func=_cmd_train)

    backtest = sub.add_parser("backtest", help="backtest a model; print a summary, write tables")
    backtest.add_argument("--model", required=True, help="models/NAME.zip (with its card)")
    backtest.add_argument("--data", required=True, help="built-in name or CSV/Parquet path")
    backtest.add_argument("--start", help="first decision bar (date or time), default: all")
    backtest.add_argument("--end", help="decide on bars before this (date or time)")
    backtest.add_argument("--cash", type=float, default=100_000.0, help="starting cash, USD")
    backtest.add_argument("--slippage-bps", type=float, default=0.0,
                          help="adverse slippage per fill, basis points")
    backtest.add_argument("--out", help="results folder (default backtests/STAMP-MODEL)")
    backtest.set_defaults(func=_cmd_backtest)

    demo = sub.add_parser(
        "demo", help="train (or reuse), backtest, replay a paper session and report, "
                     "all through papermill, on built-in GOOGL daily bars")
    demo.add_argument("--steps", type=int, help="training steps (default: params/train.yaml)")
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser(
        "serve", help="serve a model over HTTP (POST /predict, GET /health, GET /metrics)",
        description="The inference service: FastAPI on uvicorn, one worker, JSON logs on "
                    "stderr. Binds AI_SERVICE_HOST:AI_SERVICE_PORT (default 127.0.0.1:8000); "
                    "any non-loopback address requires AI_SERVICE_TOKEN. Stop with Ctrl-C.")
    serve.add_argument("--model", required=True, help="models/NAME.zip (with its card)")
    serve.add_argument("--host", help="bind address (default AI_SERVICE_HOST)")
    serve.add_argument("--port", type=int, help="TCP port, 0 for any free one (default "
                                                "AI_SERVICE_PORT)")
    serve.set_defaults(func=_cmd_serve)
    _add_gateway_parser(sub)
    _add_run_parsers(sub)
    return parser


def _add_run_parsers(sub: Any) -> None:
    """The ``run`` and ``runs`` commands."""
    from tradinglib.runs import DEFAULT_CELL_TIMEOUT_S, KINDS

    run = sub.add_parser(
        "run", help="execute a notebook with papermill and archive the run in runs/",
        description="Execute notebooks/<KIND>.ipynb in a Jupyter kernel with the parameters "
                    "of a YAML file and archive everything in runs/<UTC time>-<kind>-<label>/. "
                    "The last line printed is the run folder. Exit status: 0 ok, 1 failed "
                    "run, 2 bad input or parameters. 'run paper' runs the session and then "
                    "the report notebook on it (last line: the report's run folder).")
    run.add_argument("kind", choices=list(KINDS), help="which notebook to run")
    run.add_argument("-f", "--params-file", metavar="FILE",
                     help="YAML parameter file (default params/KIND.yaml); relative to the "
                          "working directory, else to the project root")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="override one parameter; VALUE is read as YAML (5, 0.5, true, "
                          "null, [a, b]); repeatable")
    run.add_argument("--label", help="run label (default: the parameter file's name)")
    run.add_argument("--timeout", type=int, default=DEFAULT_CELL_TIMEOUT_S, metavar="SECONDS",
                     help=f"per-cell time limit (default {DEFAULT_CELL_TIMEOUT_S}; 0: none)")
    run.add_argument("--no-report", action="store_true",
                     help="paper: do not run the report notebook afterwards")
    run.add_argument("--report-params", metavar="FILE",
                     help="paper: parameters of the report run (default params/report.yaml "
                          "where present); run_dir is set to the paper run")
    # the defaults of tradinglib.schedule are written out (tested): importing it here
    # would load pandas for every command
    run.add_argument("--at-open", action="store_true",
                     help="paper: trade in the exchange's regular session: now if it is "
                          "open, else after waiting for today's open (at most 18 h), until "
                          "the close "
                          "minus flatten_margin_minutes (stop_at); on a weekend, a holiday "
                          "or after the close, print the next open and exit 0. A replay "
                          "session runs at once")
    run.add_argument("--calendar", metavar="NAME",
                     help="--at-open: the exchange calendar, a pandas_market_calendars name "
                          "(default XNYS)")
    run.add_argument("--now", metavar="ISO-TIME",
                     help="--at-open: pretend it is this time (dry runs, tests), with a UTC "
                          "offset, e.g. 2026-11-26T09:25-05:00")
    run.set_defaults(func=_cmd_run)

    runs = sub.add_parser("runs", help="list and show archived runs").add_subparsers(
        dest="runs_command", required=True, metavar="ACTION")
    listing = runs.add_parser("list", help="archived runs with status and key metrics")
    listing.add_argument("--kind", choices=list(KINDS), help="only runs of this kind")
    listing.add_argument("--last", type=int, default=20, metavar="N",
                         help="the newest N runs (default 20; 0: all)")
    listing.set_defaults(func=_cmd_runs_list)
    show = runs.add_parser("show", help="manifest, parameters, results and files of a run")
    show.add_argument("run", help="run id, unique id prefix, 'last', or a run folder path")
    show.set_defaults(func=_cmd_runs_show)

    sweep = sub.add_parser(
        "sweep", help="run every point of a sweep file as an archived run, on Dask",
        description="Run each point of a sweep file (params/sweeps/NAME.yaml) as an archived "
                    "run tagged with the sweep, on a Dask LocalCluster or the cluster at "
                    "--scheduler. Points archived ok before are skipped (resume). Writes "
                    "runs/sweeps/NAME/ (sweep.yaml, summary.csv, report.html); the last line "
                    "printed is that folder. Exit status: 0 all ok, 1 a point failed, 2 bad "
                    "input.")
    sweep.add_argument("sweep_file", help="the sweep file; relative to the working "
                                          "directory, else to the project root")
    sweep.add_argument("--workers", type=int, default=2, metavar="N",
                       help="worker processes of the local cluster (default 2)")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786, instead of "
                            "a local cluster")
    sweep.add_argument("--timeout", type=int, default=DEFAULT_CELL_TIMEOUT_S,
                       metavar="SECONDS", help="per-cell time limit of every run (0: none)")
    sweep.set_defaults(func=_cmd_sweep)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 2 bad input, 1 other errors)."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        code = args.func(args, settings)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TradingLibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the file system refused (permissions, a full disk, ...)
        print(f"error: {exc}; check the path and its permissions", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        if not hasattr(exc, "result"):  # an archived run has printed its folder last
            print("interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
