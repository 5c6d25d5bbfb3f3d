"""kms bench: every target and operation, the JSON document, --compare, --plot, bad arguments."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_awsjson_support import REGION, running_endpoint

from kmscore.bench import results
from kmscore.bench.cli import bench
from kmscore.bench.operations import ENVELOPE_OPERATIONS, KMS_OPERATIONS

EVERY_KMS_OPERATION = ",".join(
    [*KMS_OPERATIONS, "Sign:RSA_2048", "Sign:ECC_NIST_P384", "GenerateMac:HMAC_512"]
)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(bench, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def document(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("target", "mix", "extra"),
    [
        ("library", EVERY_KMS_OPERATION, []),  # audit trail on, as shipped
        ("socket", EVERY_KMS_OPERATION, ["--no-audit"]),
        ("http", EVERY_KMS_OPERATION, []),  # kms serve --http always audits
        ("envelope", ",".join(ENVELOPE_OPERATIONS), ["--no-audit", "--size", "64K"]),
    ],
)
def test_two_second_run_of_every_target_and_operation(tmp_path, target, mix, extra):
    out = tmp_path / "run.json"
    status, stdout, stderr = invoke(
        "--target", target, "--mix", mix, "--duration", "2", "--warmup", "0.1",
        "--no-baselines", "--json", str(out), *extra,
    )  # fmt: skip
    assert status == 0, stderr
    doc = document(out)
    (contender,) = doc["contenders"]
    assert contender["role"] == "target"
    assert contender["errors"] == {}
    labels = [op["operation"] for op in doc["parameters"]["operations"]]
    assert sorted(contender["operations"]) == sorted(labels)
    for label, row in contender["operations"].items():
        assert row["calls"] > 0, label
        lat = row["latency_us"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"], label
    # Timed for about the two seconds asked (the turn ends with the calls in flight).
    assert 1.9 <= contender["elapsed_s"] < 6
    assert contender["cpu_us_per_op"] > 0
    if target in ("socket", "http"):
        assert contender["server_cpu_us_per_op"] > 0
    if target == "envelope":
        assert contender["unit"] == "bytes" and contender["items_per_s"] > 0
    assert "calls/s" in stdout and "AWS KMS list prices" in stdout


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    """One library run of the seed's mix with every baseline, a JSON file and a plot."""
    tmp = tmp_path_factory.mktemp("bench")
    out, png = tmp / "run.json", tmp / "run.png"
    status, stdout, stderr = invoke(
        "--mix", "GenerateDataKey=1,Decrypt=10", "--requests", "3000", "--warmup", "0",
        "--rounds", "3", "--no-audit", "--bill-requests", "55000000",
        "--json", str(out), "--plot", str(png),
    )  # fmt: skip
    assert status == 0, stderr
    return document(out), png, stdout, out


def test_json_schema(baseline_run):
    doc, _, _, _ = baseline_run
    assert doc["schema"] == results.SCHEMA
    m = doc["machine"]
    for key in ("cpu_model", "cores", "load_average", "python", "openssl", "engine_backend"):
        assert m[key], key
    assert isinstance(m["cores"], int) and len(m["load_average"]) == 3
    p = doc["parameters"]
    assert p["target"] == "library" and p["mode"] == "closed" and p["requests"] == 3000
    assert p["operations"] == [
        {"operation": "GenerateDataKey", "weight": 1},
        {"operation": "Decrypt", "weight": 10},
    ]
    names = [c["name"] for c in doc["contenders"]]
    assert names[0] == "library" and "raw engine" in names and "cryptography AES-GCM" in names
    # moto's backend runs beside when moto is installed (the bench extra), else a note says so.
    has_moto = importlib.util.find_spec("moto") is not None
    assert ("moto backend" in names) == has_moto
    assert any("moto" in n for n in doc["notes"]) != has_moto
    for c in doc["contenders"]:
        assert c["calls"] == 3000, c["name"]  # --requests is per contender
        assert len(c["round_ops_per_s"]) == 3
        assert c["ops_per_s"] > 0 and c["timeline"]
        assert not any(k.startswith("_") for k in c)
        # The mix is honoured: ten Decrypts for each GenerateDataKey, give or take a cycle.
        ops = c["operations"]
        assert 9 <= ops["Decrypt"]["calls"] / ops["GenerateDataKey"]["calls"] <= 11
    ratio_rows = {(r["contender"], r["operation"]) for r in doc["ratios"]}
    assert ("raw engine", "Decrypt") in ratio_rows
    bill = doc["bill"]
    assert set(bill["requests"]) == {"GenerateDataKey", "Decrypt"}
    # 55M calls a month of the 1:10 mix is the seed's 5M + 50M, give or take the mix's rounding.
    assert bill["request_cost"]["gross"] == pytest.approx(165.0, rel=0.01)
    assert bill["key_cost"] == 1.0


def test_plot_is_a_real_png(baseline_run):
    _, png, _, _ = baseline_run
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR" and len(data) > 10_000


def test_output_names_the_ratios_and_the_bill(baseline_run):
    _, _, stdout, _ = baseline_run
    assert "x calls/s" in stdout  # ratios beside the absolutes
    assert "with the data key cache" in stdout and "with batch calls" in stdout
    assert "$165" in stdout or "$164" in stdout


def test_compare_exit_codes(baseline_run, tmp_path):
    doc, _, _, mix_json = baseline_run
    args = [
        "--op",
        "Decrypt",
        "--requests",
        "2000",
        "--warmup",
        "0",
        "--no-baselines",
        "--no-audit",
    ]
    base = tmp_path / "base.json"
    status, _, stderr = invoke(*args, "--json", str(base))
    assert status == 0, stderr
    faster = document(base)
    for c in faster["contenders"]:
        for row in c["operations"].values():
            row["ops_per_s"] *= 5  # the "old" run was five times faster: a regression now
    old = tmp_path / "old.json"
    old.write_text(json.dumps(faster))
    args += ["--compare", str(old)]
    status, stdout, _ = invoke(*args, "--fail-above", "20")
    assert status == 1
    assert "REGRESSION" in stdout and "differs in" not in stdout
    # A run of another shape is compared with a warning.
    status, stdout, _ = invoke(*args[:-1], str(mix_json))
    assert status == 0 and "the older run differs in operations" in " ".join(stdout.split())
    # Without --fail-above the deltas are printed and the run passes.
    status, stdout, _ = invoke(*args)
    assert status == 0 and "compared with the older run" in stdout
    # The real numbers against themselves: no regression.
    rows, failed = results.compare(doc, doc, 5.0)
    assert rows and not failed
    slower = json.loads(json.dumps(doc))
    for c in slower["contenders"]:
        for row in c["operations"].values():
            row["ops_per_s"] /= 3
    rows, failed = results.compare(slower, doc, 20.0)
    assert not failed  # faster than before is no regression
    rows, failed = results.compare(doc, slower, 20.0)
    assert failed and all(r["regressed"] == (r["contender"] == "library") for r in rows)


def test_open_loop_at_a_rate(tmp_path):
    out = tmp_path / "open.json"
    status, _, stderr = invoke(
        "--op", "GenerateDataKey", "--rate", "400", "--duration", "1", "--warmup", "0",
        "--rounds", "1", "--no-baselines", "--no-audit", "--json", str(out),
    )  # fmt: skip
    assert status == 0, stderr
    doc = document(out)
    assert doc["parameters"]["mode"] == "open"
    (c,) = doc["contenders"]
    # 400 calls were due in the second; each is measured from when it was due.
    assert c["calls"] == 400
    row = c["operations"]["GenerateDataKey"]
    assert row["latency_us"]["p50"] >= row["service_time_us"]["p50"]
    assert 0.9 <= c["elapsed_s"] < 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--op", "Frobnicate"], "unknown operation 'Frobnicate'"),
        (["--op", "Sign:AES_128"], "unknown key spec"),
        (["--op", "Sign:HMAC_256"], "cannot use a HMAC_256 key"),
        (["--mix", "Decrypt=0"], "not a positive integer"),
        (["--rate", "0"], "--rate"),
        (["--duration", "-1"], "--duration"),
        (["--concurrency", "0"], "--concurrency"),
        (["--target", "ftp"], "--target"),
        (["--plot", "x.gif"], ".png or .svg"),
        (["--fail-above", "5"], "--fail-above needs --compare"),
        (["--compare", "/nonexistent/old.json"], "cannot read it"),
        (["--duration", "1", "--requests", "5"], "not both"),
        (["--size", "lots", "--target", "envelope"], "--size"),
        (["--target", "http", "--no-audit"], "always keeps its audit trail"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args, needle):
    status, stdout, stderr = invoke(*args)
    assert status == 2
    assert needle in stderr
    assert stderr.count("\n") == 1 and stderr.startswith("kms bench: ")
    assert stdout == ""


def test_unreachable_endpoint_exits_2(tmp_path):
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x" * 40}
    url = f"http://127.0.0.1:{_free_port()}"
    status, stdout, stderr = invoke(
        "--target", "http", "--endpoint-url", url, "--requests", "10", env=env
    )
    assert status == 2
    assert stderr.count("\n") == 1 and "cannot reach" in stderr and url in stderr
    assert stdout == ""


@pytest.fixture
def endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with running_endpoint(tmp_path / "kms", audit=False) as ep:
        yield ep


def test_wrong_secret_exits_2(endpoint):
    env = {"AWS_ACCESS_KEY_ID": endpoint.access_key_id, "AWS_SECRET_ACCESS_KEY": "wrong" * 8}
    status, stdout, stderr = invoke(
        "--target", "http", "--endpoint-url", endpoint.url, "--region", REGION,
        "--requests", "10", env=env,
    )  # fmt: skip
    assert status == 2
    assert stderr.count("\n") == 1 and "InvalidSignatureException" in stderr
    assert stdout == ""


def test_any_endpoint_with_the_usual_credentials_and_a_second_one_as_baseline(endpoint, tmp_path):
    env = {"AWS_ACCESS_KEY_ID": endpoint.access_key_id, "AWS_SECRET_ACCESS_KEY": endpoint.secret}
    out = tmp_path / "ep.json"
    status, _, stderr = invoke(
        "--target", "http", "--endpoint-url", endpoint.url, "--endpoint-url", endpoint.url,
        "--region", REGION, "--mix", "GenerateDataKey,Decrypt", "--requests", "300",
        "--warmup", "0", "--no-baselines", "--json", str(out), env=env,
    )  # fmt: skip
    assert status == 0, stderr
    doc = document(out)
    assert [c["role"] for c in doc["contenders"]] == ["target", "baseline"]
    assert all(c["calls"] == 300 and not c["errors"] for c in doc["contenders"])
    assert {r["operation"] for r in doc["ratios"]} == {"GenerateDataKey", "Decrypt"}


def test_socket_pipelined_and_library_threads(tmp_path):
    out = tmp_path / "pipe.json"
    status, _, stderr = invoke(
        "--target", "socket", "--pipeline", "--concurrency", "8",
        "--mix", "GenerateDataKey,Decrypt",
        "--requests", "2000", "--warmup", "0", "--no-audit", "--no-baselines", "--json", str(out),
    )  # fmt: skip
    assert status == 0, stderr
    (c,) = document(out)["contenders"]
    assert c["in_flight"] == 8 and c["threads"] == 1
    assert c["calls"] == 2000 and not c["errors"]
    status, _, stderr = invoke(
        "--concurrency", "4", "--op", "Encrypt", "--requests", "2000", "--warmup", "0",
        "--no-audit", "--no-baselines", "--json", str(out),
    )  # fmt: skip
    assert status == 0, stderr
    (c,) = document(out)["contenders"]
    assert c["threads"] == 4 and c["calls"] == 2000
    status, _, stderr = invoke("--pipeline", "--requests", "10")
    assert status == 2 and "--pipeline is for the socket target" in stderr


def test_the_command_lines(tmp_path):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "kmscore.bench", "--op", "Frobnicate"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("kms bench: unknown operation") and run.stderr.count("\n") == 1
    kms = "from kmscore.frontends.cli import main; main()"
    run = subprocess.run(
        [sys.executable, "-c", kms, "bench", "--requests", "200", "--warmup", "0", "--no-audit",
         "--no-baselines", "--no-live"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "library" in run.stdout and "GenerateDataKey" in run.stdout


def test_worker_processes_share_the_target(tmp_path):
    out = tmp_path / "procs.json"
    status, stdout, stderr = invoke(
        "--processes", "2", "--concurrency", "2", "--mix", "GenerateDataKey,Decrypt",
        "--requests", "2000", "--warmup", "0", "--rounds", "2", "--no-audit", "--no-baselines",
        "--json", str(out),
    )  # fmt: skip
    assert status == 0, stderr
    (c,) = document(out)["contenders"]
    assert c["name"] == "library x2 processes" and c["processes"] == 2
    assert c["in_flight"] == 4 and c["calls"] == 2000 and not c["errors"]
    assert c["cpu_us_per_op"] > 0  # the workers' CPU, not this idle process's
    assert "2 processes x 2 threads" in stdout
    status, _, stderr = invoke("--processes", "2", "--target", "envelope", "--requests", "5")
    assert status == 2 and "--processes is for" in stderr


def test_live_view_runs_and_leaves_the_results(tmp_path):
    status, stdout, stderr = invoke(
        "--live", "--mix", "GenerateDataKey,Decrypt", "--duration", "0.6", "--warmup", "0.1",
        "--rounds", "2", "--no-audit", "--no-baselines",
    )  # fmt: skip
    assert status == 0, stderr
    assert "kms bench: latency in microseconds" in stdout and "AWS KMS list prices" in stdout


def test_the_keys_a_run_makes_are_scheduled_for_deletion(tmp_path):
    from kmscore import LocalKMS

    data_dir = tmp_path / "mine"
    status, _, stderr = invoke(
        "--data-dir", str(data_dir), "--mix", "GenerateDataKey,ReEncrypt,Sign",
        "--requests", "30", "--warmup", "0", "--no-audit", "--no-baselines",
    )  # fmt: skip
    assert status == 0, stderr
    with LocalKMS(data_dir, audit=False) as kms:
        keys = kms.list_keys()["Keys"]
        states = [kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] for k in keys]
    assert len(states) == 3  # the symmetric key, ReEncrypt's second one, the signing key
    assert set(states) == {"PendingDeletion"}
