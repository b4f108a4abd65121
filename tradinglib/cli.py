"""The ``tradinglib`` command line. Each command is a thin layer over library calls."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tradinglib.config import Settings, load_settings
from tradinglib.exceptions import InputError, TradingLibError

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


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    from tradinglib.modelcard import card_path

    card, out = _train(args, settings)
    console.print(_metrics_table(card))
    print(f"model: {out}\ncard:  {card_path(out)}")
    console.print("backtest of the saved model (hash-checked) on the held-out range:")
    holdout = card.holdout_data.start if card.holdout_data else None
    folder = _backtest(out, args.data, settings, start=holdout, end=None,
                       cash=args.cash, slippage_bps=0.0, folder=None)
    print(f"results: {folder}")


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

    demo = sub.add_parser("demo", help="train on built-in GOOGL daily bars and evaluate")
    _add_train_args(demo, data="googl-daily", steps=20_000, out="models/demo-googl.zip")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 2 bad input, 1 other errors)."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        args.func(args, settings)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TradingLibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
