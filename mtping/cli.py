"""Command line: parse flags and environment into Settings, then hand over. No logic here."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mtping import __version__
from mtping.delivery import HTTP_CLIENTS, DeliveryPolicy
from mtping.settings import (
    FailurePolicy,
    KubeSettings,
    Mode,
    ScheduleSettings,
    ServerSettings,
    Settings,
    SettingsError,
    StatusSettings,
    WebhookSettings,
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
    _add_local(
        commands.add_parser("local", help="fire PingSources from YAML/JSON files, no cluster")
    )
    _add_display(
        commands.add_parser("display", help="print the CloudEvents POSTed to it (event_display)")
    )
    _add_validate(commands.add_parser("validate", help="check PingSource files offline"))
    _add_next(commands.add_parser("next", help="print when a schedule fires next"))
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
        "--http-client",
        choices=HTTP_CLIENTS,
        default=defaults.delivery.http_client,
        help="lean: prepared requests over pooled asyncio connections, aiohttp for what it "
        "does not cover; aiohttp: aiohttp for every send (default %(default)s)",
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
        "--per-source-metrics",
        action="store_true",
        help="also count events per source in mtping_source_events_total (a series per "
        "source: mind Prometheus' cardinality)",
    )
    run.add_argument(
        "--failure-event-interval",
        type=float,
        default=defaults.failure_event_interval,
        help="seconds between Warning Event writes per failing source (default 60)",
    )
    run.add_argument(
        "--webhook-port",
        type=_port,
        default=defaults.webhook.port,
        help="HTTPS port of the validating admission webhook; 0 disables it (default 8443)",
    )
    run.add_argument(
        "--webhook-url",
        type=_webhook_url,
        metavar="URL",
        help="where the apiserver reaches the webhook when no Service does (e.g. "
        "https://127.0.0.1:8443/validate); mtping then creates its webhook configuration",
    )
    run.add_argument(
        "--webhook-failure-policy",
        choices=[policy.value for policy in FailurePolicy],
        default=defaults.webhook.failure_policy.value,
        help="what the apiserver does with PingSource writes while the webhook is unreachable "
        "(default Fail: refuse them)",
    )
    run.add_argument(
        "--status-interval",
        type=float,
        default=defaults.status.delivery_interval,
        help="standalone: at most one status.lastDelivery write per source per this many "
        "seconds; 0: none (default 60)",
    )
    run.add_argument(
        "--status-refresh",
        type=float,
        default=defaults.status.delivery_refresh,
        help="standalone: rewrite an unchanged lastDelivery after this many seconds; 0: only "
        "when its result changes (default 3600)",
    )
    run.add_argument("--log-format", choices=["text", "json"], default=defaults.log_format)
    run.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=defaults.log_level
    )


def _add_local(local: argparse.ArgumentParser) -> None:
    local.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="PingSource files, or folders of *.yaml, *.yml, *.json; re-read when they change",
    )
    sink = local.add_mutually_exclusive_group()
    sink.add_argument(
        "--sink",
        type=_sink_url,
        metavar="URL",
        help="send every source's events here (needed for sink.ref sources)",
    )
    sink.add_argument(
        "--display",
        action="store_true",
        help="start the built-in display and send every event to it (printed on stdout)",
    )
    local.add_argument(
        "--metrics-port",
        type=_port,
        default=0,
        metavar="N",
        help="serve Prometheus /metrics on this port (default: off)",
    )
    local.add_argument(
        "--default-timezone",
        type=_timezone,
        default="UTC",
        metavar="TZ",
        help="zone of schedules without spec.timezone or CRON_TZ= (default UTC)",
    )


def _add_display(display: argparse.ArgumentParser) -> None:
    display.add_argument(
        "--port", type=_port, default=8080, help="port to listen on (default %(default)s)"
    )
    display.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default %(default)s)"
    )
    display.add_argument(
        "--json",
        action="store_true",
        dest="as_json",
        help="one JSON object per event and line (CloudEvents JSON format)",
    )


def _add_validate(validate: argparse.ArgumentParser) -> None:
    validate.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="PingSource files or folders"
    )
    validate.add_argument(
        "--default-timezone",
        type=_timezone,
        default="UTC",
        metavar="TZ",
        help="zone of schedules without spec.timezone or CRON_TZ= (default UTC)",
    )


def _add_next(next_: argparse.ArgumentParser) -> None:
    next_.add_argument(
        "schedule",
        nargs="+",
        metavar="SCHEDULE",
        help='cron schedule, quoted: "*/5 * * * *", "0 */2 * * * *" (seconds), "@daily"',
    )
    next_.add_argument("--timezone", metavar="TZ", help="IANA zone of the schedule (default UTC)")
    next_.add_argument(
        "--count", type=_positive_int, default=5, metavar="N", help="how many (default 5)"
    )
    next_.add_argument(
        "--after",
        type=_instant,
        metavar="RFC3339",
        help="start after this instant, e.g. 2026-03-28T12:00:00Z (default: now)",
    )


def _sink_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an absolute http(s) URL")
    return text


def _webhook_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an absolute https URL")
    return text


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0-65535)")
    return port


def _positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return number


def _timezone(text: str) -> str:
    from mtping.schedule import TimezoneError, validate_timezone

    try:
        return validate_timezone(text)
    except TimezoneError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _instant(text: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 timestamp") from error
    if instant.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset: add Z or +HH:MM")
    return instant


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
            http_client=args.http_client,
        ),
        servers=ServerSettings(health_port=args.health_port, metrics_port=args.metrics_port),
        webhook=_webhook_settings(args),
        status=StatusSettings(
            delivery_interval=args.status_interval, delivery_refresh=args.status_refresh
        ),
        failure_event_interval=args.failure_event_interval,
        per_source_metrics=args.per_source_metrics,
        no_shutdown_after=no_shutdown_after_from_env(env, defaults.no_shutdown_after),
        log_format=args.log_format,
        log_level=args.log_level,
    )


def _webhook_settings(args: argparse.Namespace) -> WebhookSettings:
    if args.webhook_url and not args.webhook_port:
        raise SettingsError("--webhook-url needs the webhook on: set --webhook-port")
    return WebhookSettings(
        port=args.webhook_port,
        url=args.webhook_url,
        failure_policy=FailurePolicy(args.webhook_failure_policy),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        return _OFFLINE_COMMANDS[args.command](args)
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


def _local(args: argparse.Namespace) -> int:
    from mtping import logs
    from mtping.local import app as local_app

    logs.configure(log_format="text", level="warning")
    options = local_app.LocalOptions(
        paths=tuple(args.paths),
        sink=args.sink,
        display=args.display,
        metrics_port=args.metrics_port,
        default_timezone=args.default_timezone,
    )
    return _run_until_complete(local_app.run_local(options))


def _display(args: argparse.Namespace) -> int:
    from mtping.local import app as local_app

    options = local_app.DisplayOptions(host=args.host, port=args.port, as_json=args.as_json)
    return _run_until_complete(local_app.run_display(options))


def _validate(args: argparse.Namespace) -> int:
    from mtping import commands

    return commands.validate(
        args.paths, default_timezone=args.default_timezone, out=sys.stdout, err=sys.stderr
    )


def _next(args: argparse.Namespace) -> int:
    from mtping import commands

    return commands.next_fires(
        " ".join(args.schedule),
        timezone=args.timezone,
        count=args.count,
        after=args.after,
        out=sys.stdout,
        err=sys.stderr,
    )


_OFFLINE_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "local": _local,
    "display": _display,
    "validate": _validate,
    "next": _next,
}


def _run_until_complete(main: Coroutine[Any, Any, int]) -> int:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the `fast` extra): about twice the sends per core."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
