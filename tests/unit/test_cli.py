"""The offline subcommands run in-process through `mtping.cli.main`: outputs and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtping import cli

SAMPLES = Path(__file__).parents[2] / "config" / "samples"

BROKEN = """\
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: ok
spec:
  sink:
    uri: http://127.0.0.1:9/
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: bad
spec:
  timezone: CEST
  contentType: application/json
  data: "{not json"
---
metadata:
  name: [oops
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_accepts_the_samples(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate", str(SAMPLES)) == (0, "", "ok: 2 valid PingSources in 2 files\n")


def test_validate_reports_one_line_per_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    (tmp_path / "copy.yaml").write_text(BROKEN.split("---")[0])
    code, out, err = run(capsys, "validate", str(tmp_path))
    assert code == 1
    assert out.splitlines() == [
        f"{path}:2: spec.timezone: unknown time zone 'CEST': 'CEST' is an ambiguous "
        "abbreviation, not a zone name; did you mean 'Europe/Berlin' (Central Europe) or "
        "'Europe/Paris' (Central Europe)?",
        f"{path}:2: spec.data: is not valid JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1) (contentType is application/json)",
        f"{path}:2: spec.sink: missing; set ref or uri",
        f"{path}:3: yaml: line 20, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)",
        f"{tmp_path / 'copy.yaml'}:1: metadata.name: default/ok is also defined in {path}:1",
    ]
    assert err == "5 problems in 2 of 2 files\n"


def test_validate_uses_the_default_timezone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "validate", str(SAMPLES), "--default-timezone", "Europe/Berlin")[0] == 0
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["validate", str(SAMPLES), "--default-timezone", "CEST"])
    assert exit_info.value.code == 2
    assert "unknown time zone 'CEST'" in capsys.readouterr().err


def test_validate_a_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate", "/no/such.yaml") == (
        2,
        "",
        "mtping validate: no such file or folder: /no/such.yaml\n",
    )


def test_next_applies_the_dst_rule(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["next", "30 2 * * *", "--timezone", "Europe/Berlin"]
    argv += ["--after", "2026-03-28T12:00:00Z", "--count", "2"]
    assert run(capsys, *argv) == (
        0,
        "2026-03-29T03:00:00+02:00\n2026-03-30T02:30:00+02:00\n",
        "",
    )


def test_next_defaults_to_five_and_joins_an_unquoted_schedule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["next", "*/20", "*", "*", "*", "*", "*", "--after", "2026-01-01T00:00:00+01:00"]
    assert run(capsys, *argv) == (
        0,
        "2025-12-31T23:00:20+00:00\n"
        "2025-12-31T23:00:40+00:00\n"
        "2025-12-31T23:01:00+00:00\n"
        "2025-12-31T23:01:20+00:00\n"
        "2025-12-31T23:01:40+00:00\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["next", "61 * * * *"], "mtping next: invalid schedule '61 * * * *': minute field '61' "),
        (["next", "* * * * *", "--timezone", "Mars/Olympus"], "mtping next: unknown time zone"),
    ],
)
def test_next_invalid_schedule(
    capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(reason)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["next", "* * * * *", "--after", "2026-03-28T12:00:00"], "has no offset: add Z"),
        (["next", "* * * * *", "--after", "yesterday"], "is not an RFC 3339 timestamp"),
        (["next", "* * * * *", "--count", "0"], "0 is not a positive number"),
        (["local", ".", "--sink", "relative/path"], "is not an absolute http(s) URL"),
        (["local", ".", "--sink", "http://x/", "--display"], "not allowed with argument"),
        (["display", "--port", "70000"], "70000 is not a port number"),
    ],
)
def test_bad_flags_exit_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_local_refuses_a_missing_path(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mtping.logs.configure", lambda **_: None)  # keep pytest's log handlers
    assert run(capsys, "local", "/no/such/folder") == (
        2,
        "",
        "mtping local: no such file or folder: /no/such/folder\n",
    )


def test_webhook_flags_become_the_webhook_settings() -> None:
    from mtping.settings import FailurePolicy, WebhookSettings

    url = "https://127.0.0.1:9443/validate"
    argv = ["run", "--webhook-port=9443", f"--webhook-url={url}"]
    args = cli.build_parser().parse_args([*argv, "--webhook-failure-policy=Ignore"])
    assert cli.settings_from(args, {}).webhook == WebhookSettings(
        port=9443, url=url, failure_policy=FailurePolicy.IGNORE
    )
    defaults = cli.settings_from(cli.build_parser().parse_args(["run"]), {}).webhook
    assert (defaults.port, defaults.url, defaults.failure_policy) == (8443, None, "Fail")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--webhook-url=http://127.0.0.1:8443/validate"], "not an absolute https URL"),
        (["run", "--webhook-failure-policy=Sometimes"], "invalid choice: 'Sometimes'"),
        (["run", "--webhook-port=0", "--webhook-url=https://127.0.0.1/validate"], "--webhook-url"),
    ],
)
def test_bad_webhook_flags_exit_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:
        code = int(str(exit_info.code))
    assert code == 2
    assert message in capsys.readouterr().err


def test_status_flags_become_the_status_settings() -> None:
    from mtping.settings import StatusSettings

    argv = ["run", "--status-interval=5", "--status-refresh=0", "--cluster-domain=corp.internal"]
    settings = cli.settings_from(cli.build_parser().parse_args(argv), {})

    assert settings.status == StatusSettings(delivery_interval=5, delivery_refresh=0)
    assert settings.kube.cluster_domain == "corp.internal"
    defaults = cli.settings_from(cli.build_parser().parse_args(["run"]), {}).status
    assert (defaults.delivery_interval, defaults.delivery_refresh) == (60, 3600)


@pytest.mark.parametrize(
    ("argv", "client"), [([], "lean"), (["--http-client", "aiohttp"], "aiohttp")]
)
def test_http_client_flag_selects_the_senders_client(argv: list[str], client: str) -> None:
    args = cli.build_parser().parse_args(["run", *argv])
    assert cli.settings_from(args, {}).delivery.http_client == client
