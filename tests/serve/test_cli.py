"""`lzn serve` as a command: its flags, its one-line errors (no `serve` extra, a port in use, a bare model
folder), the warning for another host, and a real server process answering and stopping on Ctrl-C."""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request


from lzn.cli.main import build_parser, main
from lzn.models import LatentZoningNetwork
from tests.serve.conftest import Server


def _fails(args, capsys, *needles):
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lzn serve: error:"), err
    for needle in needles:
        assert needle in err, err


def test_the_command_and_its_flags():
    args = build_parser().parse_args(["serve", "RUN"])
    assert (args.host, args.port, args.token, args.max_batch, args.max_samples) == ("127.0.0.1", 8000, None, 16, 16)
    assert args.max_request_bytes == 4 * 2**20 and args.max_image_side == 1024 and args.max_steps == 100
    assert build_parser().parse_args(["serve", "RUN", "--port", "0"]).port == 0


def test_bad_flags_fail_in_one_line(capsys):
    for flags, needle in ((["--port", "70000"], "port from 0 to 65535"), (["--max-batch", "0"], "positive integer")):
        assert main(["serve", "RUN", *flags]) == 2
        assert needle in capsys.readouterr().err


def test_without_the_serve_extra_one_line_names_it(joint_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "starlette.applications", None)  # as if starlette were not installed
    monkeypatch.delitem(sys.modules, "lzn.serve.app", raising=False)
    _fails(["serve", str(joint_run)], capsys, "pip install 'lzn[serve]'")


def test_a_port_in_use(joint_run, capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        _fails(["serve", str(joint_run), "--port", str(taken.getsockname()[1])], capsys, "cannot listen on 127.0.0.1:",
               "--port")
    finally:
        taken.close()


def test_another_host_warns_in_one_line(joint_run, capsys, monkeypatch):
    import lzn.serve.app as app

    started, bind = {}, app.bind

    def local_bind(host, port):  # the test listens on this machine only
        return bind("127.0.0.1", 0)

    def no_serve(asgi_app, sock):
        started["app"] = asgi_app
        sock.close()

    monkeypatch.setattr(app, "bind", local_bind)
    monkeypatch.setattr(app, "serve", no_serve)
    capsys.readouterr()
    assert main(["serve", str(joint_run), "--host", "0.0.0.0", "--zone-points", "50"]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "reachable from other machines" in warnings[0] and "--token" in warnings[0], err
    assert "serving" in out and "image set: digits-train" in out and "app" in started
    monkeypatch.setenv("LZN_SERVE_TOKEN", "from-the-environment")
    assert main(["serve", str(joint_run), "--host", "0.0.0.0", "--zone-points", "50"]) == 0
    out, err = capsys.readouterr()
    assert "every request must carry the token" in err and "?token=..." in out and "from-the-environment" not in out


def test_a_bare_model_folder_serves_without_an_image_set(joint_run, tmp_path, capsys, monkeypatch):
    import lzn.serve.app as app

    folder = tmp_path / "model"
    LatentZoningNetwork.from_pretrained(str(joint_run / "model")).save_pretrained(str(folder))
    monkeypatch.setattr(app, "serve", lambda asgi_app, sock: sock.close())
    capsys.readouterr()
    assert main(["serve", str(folder), "--port", "0", "--zone-points", "50"]) == 0
    out = capsys.readouterr().out
    assert "no image set" in out and "retrieve" in out  # what it cannot do, named at start
    _fails(["serve", str(tmp_path / "missing"), "--port", "0"], capsys, "neither an lzn run folder")


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_real_server_answers_and_stops_on_ctrl_c(joint_run):
    server = Server(joint_run, "--token", "t0ken")
    try:
        assert _get(server.url + "/health")[0] == 401
        assert _get(server.url + "/health", "t0ken") == (200, {"status": "ok"})
        status, info = _get(server.url + "/info", "t0ken")
        assert status == 200 and info["operations"]["classify"]
        body = json.dumps({"num": 2, "steps": 2}).encode()
        request = urllib.request.Request(server.url + "/generate", body, method="POST", headers={
            "Authorization": "Bearer t0ken", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert len(json.loads(response.read())["images"]) == 2
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert "Traceback" not in err, err


def test_accepted_connections_send_without_delay():
    """asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto is IPPROTO_TCP: without it, an answer
    on a kept-alive connection after the first waited ~40 ms for the client's delayed ACK (benchmarks/serve.py)."""
    import asyncio

    from lzn.serve.app import bind

    async def accepted_nodelay() -> int:
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                got.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=bind("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0
