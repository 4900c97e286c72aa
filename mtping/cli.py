"""Command line: parse flags and environment into Settings, then hand over. No logic here."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence

from mtping import __version__
from mtping.delivery import DeliveryPolicy
from mtping.settings import (
    KubeSettings,
    Mode,
    ScheduleSettings,
    ServerSettings,
    Settings,
    SettingsError,
    kube_from_env,
    no_shutdown_after_from_env,
    sink_timeout_from_env,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtping", description="Fires Kubernetes PingSources as CloudEvents."
    )
    parser.add_argument("--version", action="version", version=f"mtping {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands.add_parser("run", help="watch PingSources cluster-wide and fire them"))
    return parser


def _add_run(run: argparse.ArgumentParser) -> None:
    defaults = Settings()
    run.add_argument(
        "--mode",
        choices=[mode.value for mode in Mode],
        default=defaults.mode.value,
        help="adapter: beside Knative's controller (fire Ready sources at "
        "status.sinkUri); standalone: no Knative needed (default)",
    )
    run.add_argument(
        "--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, in-cluster, ~/.kube/config)"
    )
    run.add_argument(
        "--default-timezone",
        default=defaults.schedule.default_timezone,
        help="zone of schedules without spec.timezone or CRON_TZ= (default UTC)",
    )
    run.add_argument(
        "--sink-timeout",
        type=float,
        default=None,
        help="seconds per delivery attempt; -1: none (default $K_SINK_TIMEOUT or 10)",
    )
    run.add_argument(
        "--max-attempts",
        type=int,
        default=defaults.delivery.max_attempts,
        help="attempts per event, first included (default 6)",
    )
    run.add_argument(
        "--per-sink-concurrency",
        type=int,
        default=defaults.delivery.per_origin_limit,
        help="concurrent sends per sink origin (default %(default)s)",
    )
    run.add_argument(
        "--total-concurrency",
        type=int,
        default=defaults.delivery.total_limit,
        help="concurrent sends in total (default %(default)s)",
    )
    run.add_argument(
        "--health-port",
        type=int,
        default=defaults.servers.health_port,
        help="port of /health and /readiness; 0 disables (default 8080)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.servers.metrics_port,
        help="port of /metrics; 0 disables (default 9090)",
    )
    run.add_argument(
        "--cluster-domain",
        default=KubeSettings().cluster_domain,
        help="DNS suffix of Service sinks (default cluster.local)",
    )
    run.add_argument(
        "--failure-event-interval",
        type=float,
        default=defaults.failure_event_interval,
        help="seconds between Warning Event writes per failing source (default 60)",
    )
    run.add_argument("--log-format", choices=["text", "json"], default=defaults.log_format)
    run.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=defaults.log_level
    )


def settings_from(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    defaults = Settings()
    timeout = sink_timeout_from_env(env, defaults.delivery.attempt_timeout)
    if args.sink_timeout is not None:
        timeout = None if args.sink_timeout < 0 else args.sink_timeout
    from_env = kube_from_env(env)
    return Settings(
        mode=Mode(args.mode),
        kube=KubeSettings(
            kubeconfig=args.kubeconfig,
            system_namespace=from_env.system_namespace,
            pod_name=from_env.pod_name,
            cluster_domain=args.cluster_domain,
        ),
        schedule=ScheduleSettings(default_timezone=args.default_timezone),
        delivery=DeliveryPolicy(
            attempt_timeout=timeout,
            max_attempts=args.max_attempts,
            per_origin_limit=args.per_sink_concurrency,
            total_limit=args.total_concurrency,
        ),
        servers=ServerSettings(health_port=args.health_port, metrics_port=args.metrics_port),
        failure_event_interval=args.failure_event_interval,
        no_shutdown_after=no_shutdown_after_from_env(env, defaults.no_shutdown_after),
        log_format=args.log_format,
        log_level=args.log_level,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args, dict(os.environ))
    except SettingsError as error:
        print(f"mtping: {error}", file=sys.stderr)
        return 2
    return _run(settings)


def _run(settings: Settings) -> int:
    from mtping import app, logs  # imported here: keeps `mtping --version` fast

    logs.configure(log_format=settings.log_format, level=settings.log_level)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(app.run(settings))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the `fast` extra): about twice the sends per core."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
